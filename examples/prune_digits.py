"""The tfprune demo (`make demo`, `tfprune demo`): prune a digits CNN during fit, shrink it,
export it to LiteRT and compare it with the dense model. The code is in `tfprune/demo.py`.

    python examples/prune_digits.py --out out
"""

from tfprune.demo import main

if __name__ == "__main__":
    main()
