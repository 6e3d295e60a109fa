#!/usr/bin/env python3
"""Writes the synthetic customer dataset of the example pipeline.

Deterministic (fixed seed): running it again reproduces the committed CSV
byte for byte. The names and e-mail addresses are invented; they stand for
the personal data a real dataset would hold.
"""
import math
import random
import sys

FIRST = ["Ada", "Bo", "Cy", "Dee", "Eli", "Fay", "Gus", "Hal", "Ivy", "Jo", "Kai", "Lu", "Mo", "Nia", "Oz", "Pia"]
LAST = ["Archer", "Baker", "Cole", "Dunn", "Ellis", "Ford", "Gray", "Hart", "Ives", "Judd", "Knox", "Lowe"]


def rows(n, seed):
    rng = random.Random(seed)
    for i in range(1, n + 1):
        first, last = rng.choice(FIRST), rng.choice(LAST)
        age = rng.randint(18, 80)
        income = rng.randint(18, 160) * 1000
        tenure = rng.randint(1, 120)
        calls = min(12, int(rng.expovariate(0.5)))
        z = 0.8 + 0.45 * calls - 0.03 * tenure - 0.000008 * income + 0.01 * (age - 45)
        churned = 1 if rng.random() < 1 / (1 + math.exp(-z)) else 0
        email = f"{first}.{last}{i}@example.com".lower()
        yield f"{i},{first} {last},{email},{age},{income},{tenure},{calls},{churned}"


def main():
    n, seed, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    with open(out, "w", newline="\n") as f:
        f.write("id,name,email,age,income,tenure_months,support_calls,churned\n")
        for r in rows(n, seed):
            f.write(r + "\n")


if __name__ == "__main__":
    main()
