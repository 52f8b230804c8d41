"""`factpatch serve`: the lab in a browser and the edited model over an OpenAI-compatible API.

    host       the model in memory, its patch stack, the reader/writer lock, stack versions
    lock       the writer-preferring reader/writer lock
    state      `--state DIR`: the applied stack on disk, written atomically
    jobs       traces and edits run as jobs with progress
    auth       who may call: loopback only, or a Bearer token / signed-in page; CSRF; Host and Origin
    openai     GET /v1/models, POST /v1/completions, POST /v1/chat/completions (SSE streams)
    patches    /v1/patches (list, upload, revert, download), /v1/edits, /v1/traces, /v1/jobs
    lab        the page at /, its sign-in, and the compare call
    app        `create_app`: the FastAPI app over one host
"""
