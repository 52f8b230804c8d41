"""The δ optimisation in float32 against bfloat16 (`v_dtype`), side by side in one process.

The precision lever of issue 17, as recorded in runs/bench/value-precision-*: `value_settings.py`
with its default variants (float32, bfloat16); see there for the options.

    python benchmarks/value_precision.py --method rome --n 50 --json OUT.json
"""

from value_settings import main

if __name__ == "__main__":
    main()
