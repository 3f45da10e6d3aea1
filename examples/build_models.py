"""Build the example models with fixed seeds.

    python examples/build_models.py [--out examples/churn/models]

churn v1: logistic regression; churn v2: gradient boosting; churn v3: histogram gradient
boosting (the shadow candidate); churn eu: logistic regression fitted on EU customers (all on the
same 10 features); ltv v1: a ridge regression of customer lifetime value on 6 features.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import joblib
import numpy as np
from sklearn.ensemble import GradientBoostingClassifier, HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

CHURN_FEATURES = [
    "tenure_months",
    "monthly_charges",
    "support_calls",
    "contract_monthly",
    "has_fiber",
    "electronic_payment",
    "age",
    "num_products",
    "late_payments",
    "satisfaction",
]
LTV_FEATURES = ["tenure_months", "monthly_charges", "num_products", "age", "discount", "region_eu"]


def churn_data(n: int, seed: int, eu: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Synthetic churn data with an interaction a linear model misses and trees catch.
    EU customers churn less on monthly contracts and more on late payments."""
    rng = np.random.default_rng(seed)
    tenure = rng.integers(1, 72, n)
    charges = rng.normal(70, 25, n).clip(15, 150)
    calls = rng.poisson(1.5, n)
    monthly = rng.integers(0, 2, n)
    fiber = rng.integers(0, 2, n)
    epay = rng.integers(0, 2, n)
    age = rng.integers(18, 85, n)
    products = rng.integers(1, 6, n)
    late = rng.poisson(0.5, n)
    satisfaction = rng.integers(1, 6, n)
    logit = (
        -1.0
        - 0.04 * tenure
        + 0.02 * (charges - 70)
        + 0.45 * calls
        + 1.1 * monthly
        + 0.8 * epay
        - 0.3 * products
        + 0.6 * late
        - 0.5 * (satisfaction - 3)
        + 1.8 * fiber * monthly
        - 0.015 * (age - 50)
        + 2.5 * (calls >= 4) * (satisfaction <= 2)
        - 2.0 * (tenure > 48) * (products >= 3)
        + 1.5 * np.sin(charges / 12.0)
    )
    if eu:
        logit = logit - 0.8 * monthly + 0.7 * late
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.int64)
    x = np.column_stack(
        [tenure, charges, calls, monthly, fiber, epay, age, products, late, satisfaction]
    ).astype(np.float64)
    return x, y


def ltv_data(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    tenure = rng.integers(1, 72, n)
    charges = rng.normal(70, 25, n).clip(15, 150)
    products = rng.integers(1, 6, n)
    age = rng.integers(18, 85, n)
    discount = rng.uniform(0, 0.3, n)
    eu = rng.integers(0, 2, n)
    y = (
        tenure * charges * (1 - discount) * (0.9 + 0.05 * products)
        + 150 * eu
        + rng.normal(0, 80, n)
    )
    x = np.column_stack([tenure, charges, products, age, discount, eu]).astype(np.float64)
    return x, y


def build(out: Path) -> None:
    x, y = churn_data(6000, seed=7)
    v1 = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000, random_state=0))
    v1.fit(x, y)
    v2 = GradientBoostingClassifier(n_estimators=120, max_depth=3, random_state=0)
    v2.fit(x, y)
    v3 = HistGradientBoostingClassifier(max_iter=80, random_state=0)
    v3.fit(x, y)
    ex, ey = churn_data(4000, seed=8, eu=True)
    eu = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000, random_state=0))
    eu.fit(ex, ey)
    lx, ly = ltv_data(4000, seed=11)
    ltv = make_pipeline(StandardScaler(), Ridge(alpha=1.0))
    ltv.fit(lx, ly)
    built = (
        ("churn/v1", v1),
        ("churn/v2", v2),
        ("churn/v3", v3),
        ("churn/eu", eu),
        ("ltv/v1", ltv),
    )
    for rel, model in built:
        target = out / rel
        target.mkdir(parents=True, exist_ok=True)
        joblib.dump(model, target / "model.joblib")
    xt, yt = churn_data(2000, seed=99)
    print(
        f"churn v1 accuracy {v1.score(xt, yt):.3f}, v2 {v2.score(xt, yt):.3f}, "
        f"v3 {v3.score(xt, yt):.3f}; "
        f"models in {out}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "churn" / "models")
    build(parser.parse_args().out)


if __name__ == "__main__":
    main()
