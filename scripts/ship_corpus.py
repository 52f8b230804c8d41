"""Draw the embedded models' default key-statistics corpus and store it in the package.

    python scripts/ship_corpus.py smollm2-135m gemma3-270m [--fresh]

The corpus is what `factpatch.editing.stats.sample_token_corpus` draws for C and σ by default
(20,480 tokens, seed 0, top-k 50, fixed-length rows): the same function draws it here, and the
file (`src/factpatch/data/corpora/<fingerprint>/sampled-<key>.safetensors`, int32 ids, the draw's
settings and the weights' fingerprint as metadata) is used only for weights and settings that
match. With `--fresh` the corpus is drawn anew rather than taken from the user cache (where an
earlier draw by the same code may already be). Rerun it whenever the sampler or its settings
change: the old files then no longer match and are ignored.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
from pathlib import Path

from factpatch.core.errors import FactpatchError
from factpatch.core.models import load_model
from factpatch.editing.stats import CorpusSpec, sample_token_corpus, write_shipped_corpus

logger = logging.getLogger("ship_corpus")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+")
    parser.add_argument("--fresh", action="store_true", help="draw anew instead of reading the user cache")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    spec = CorpusSpec()  # the default corpus: what a first edit asks for
    for name in args.models:
        try:
            lm = load_model(name)
        except FactpatchError as exc:
            parser.error(str(exc))
        with tempfile.TemporaryDirectory() as scratch:
            cache = Path(scratch) if args.fresh else None
            ids = sample_token_corpus(lm, spec.n_tokens, spec.seed, cache, progress=True, use_shipped=False)
        path = write_shipped_corpus(lm, ids, spec.n_tokens, spec.seed)
        logger.info("%s: %s ids -> %s (%d bytes)", name, tuple(ids.shape), path, path.stat().st_size)


if __name__ == "__main__":
    main()
