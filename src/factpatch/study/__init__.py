"""Human evaluation of edited-model texts (ROME paper, appendix J).

Raters rank the texts that several methods (ROME, FT+L, the unedited model...) generated after
a counterfactual edit, once for consistency with the counterfactual and once for fluency,
without learning which text came from which method.

- `scenarios`: read and check the texts to rank (`factpatch compare`'s JSONL).
- `create`: the blind, balanced design and the database file (`db`).
- `app`: the FastAPI web app raters and the admin use (the `study` extra: FastAPI, uvicorn,
  Jinja2, python-multipart), behind core.web's security headers and request-size limit;
  `security`: tokens, signed forms, credential checks.
- `ranking`: the criteria and the check of a submitted ranking.
- `stats`, `analyze`: rank distributions, preferences with bootstrap intervals, agreement.
- `cli`: `factpatch study create | serve | analyze`.
"""
