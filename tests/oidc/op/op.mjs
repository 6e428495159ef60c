// A real OpenID provider (the oidc-provider package) for extauthz's issuer and userinfo tests.
//
//   node op.mjs <port> <kid>
//
// Serves, at http://127.0.0.1:<port>: OpenID discovery, a JWKS with one RSA key named <kid>
// (generated at start; restart with another kid to rotate), the token endpoint and userinfo.
// Tokens are minted by the provider's own models (signed by its keystore, stored in its
// adapter, checked by its userinfo endpoint) through one test-only route, so the tests need no
// browser login:
//
//   POST /_test/token {"sub": "...", "claims": {...}, "format": "jwt"|"opaque",
//                      "audience": "...", "expires_in": 600}
//   -> {"access_token": "..."}
//
// "claims" become the account's claims at userinfo and, for a JWT, extra access-token claims.
// Prints "ready <issuer>" on stdout once listening.
import * as crypto from 'node:crypto';
import Provider from 'oidc-provider';

const [port, kid] = process.argv.slice(2);
const issuer = `http://127.0.0.1:${port}`;
const accounts = new Map();

const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
const jwk = { ...privateKey.export({ format: 'jwk' }), kid, alg: 'RS256', use: 'sig' };

const provider = new Provider(issuer, {
  jwks: { keys: [jwk] },
  clients: [{
    client_id: 'test', client_secret: 'secret', grant_types: ['client_credentials'],
    redirect_uris: [], response_types: [],
  }],
  scopes: ['openid', 'email', 'profile', 'offline_access'],
  claims: { openid: ['sub'], email: ['email', 'email_verified'], profile: ['name', 'groups', 'team', 'org'] },
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
  },
  async findAccount(_ctx, sub) {
    return { accountId: sub, async claims() { return { sub, ...(accounts.get(sub) ?? {}) }; } };
  },
  async extraTokenClaims(_ctx, token) {
    return accounts.get(token.accountId) ?? {};
  },
});
provider.proxy = false;

async function readJson(req) {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  return JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}');
}

provider.use(async (ctx, next) => {
  if (ctx.path !== '/_test/token' || ctx.method !== 'POST') return next();
  const body = await readJson(ctx.req);
  const { sub, claims = {}, format = 'jwt', audience, expires_in: expiresIn = 600 } = body;
  accounts.set(sub, claims);
  const client = await provider.Client.find('test');
  const scope = 'openid email profile';
  const grant = new provider.Grant({ accountId: sub, clientId: 'test' });
  grant.addOIDCScope(scope);
  const grantId = await grant.save();
  const token = new provider.AccessToken({
    accountId: sub, client, grantId, scope, gty: 'authorization_code', expiresIn,
  });
  if (format === 'jwt') {
    token.resourceServer = new provider.ResourceServer(audience, {
      audience, scope: 'api', accessTokenFormat: 'jwt', jwt: { sign: { alg: 'RS256' } },
    });
  }
  ctx.body = { access_token: await token.save() };
});

provider.listen(Number(port), '127.0.0.1', () => {
  process.stdout.write(`ready ${issuer}\n`);
});
