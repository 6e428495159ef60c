// Runs every object's JSON-schema validation (the models' validate()); tsc has already checked
// the same objects against the models' TypeScript types, which refuse unknown fields.
// objects.mts is written next to this file by tests/deploy/models.py.
import { objects } from "./objects.mjs";

const results = objects.map(([name, model]) => {
  try {
    model.validate();
    return { name, ok: true };
  } catch (error) {
    return { name, ok: false, error: String((error as Error).message ?? error) };
  }
});
console.log(JSON.stringify(results));
