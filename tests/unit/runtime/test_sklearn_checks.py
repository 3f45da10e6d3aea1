"""The ndarray short cut of scikit-learn's dataframe checks changes no answer and no prediction."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from modelrouter.runtime import sklearn_checks


def test_an_ndarray_is_answered_at_once_and_everything_else_by_narwhals() -> None:
    assert sklearn_checks.install()
    assert sklearn_checks.install()  # idempotent: not wrapped twice
    from narwhals.stable.v2 import dependencies

    for name in sklearn_checks.CHECKS:
        check = getattr(dependencies, name)
        assert check.__modelrouter_fast__
        assert not hasattr(check.__wrapped__, "__modelrouter_fast__")
    frame = pd.DataFrame({"a": [1.0], "b": [2.0]})
    assert dependencies.is_into_dataframe(frame) is True
    assert dependencies.is_into_series(frame["a"]) is True
    assert dependencies.is_into_dataframe(np.zeros((2, 2))) is False
    assert dependencies.is_into_series(np.zeros(2)) is False

    class Sub(np.ndarray):
        pass

    sub = np.zeros((2, 2)).view(Sub)  # not exactly an ndarray: narwhals' own answer
    assert dependencies.is_into_dataframe(sub) is dependencies.is_into_dataframe.__wrapped__(sub)


def test_feature_name_checks_of_dataframes_still_run() -> None:
    sklearn_checks.install()
    x = pd.DataFrame({"a": [0.0, 1.0, 2.0, 3.0], "b": [1.0, 0.0, 1.0, 0.0]})
    model = LogisticRegression().fit(x, [0, 0, 1, 1])
    with pytest.raises(ValueError, match="feature names"):
        model.predict(x.rename(columns={"a": "c"}))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.predict(x.to_numpy())
    assert any("feature names" in str(w.message) for w in caught)


def test_predictions_are_the_same_with_and_without_it() -> None:
    """In a fresh interpreter: the same fitted models predict the same arrays before and after
    :func:`install` (this process has it installed already)."""
    script = textwrap.dedent(
        """
        import numpy as np
        from sklearn.ensemble import RandomForestClassifier
        from sklearn.linear_model import LogisticRegression, Ridge
        from modelrouter.runtime import sklearn_checks

        rng = np.random.default_rng(7)
        x = rng.normal(size=(200, 6))
        y = (x[:, 0] + x[:, 1] > 0).astype(int)
        models = [
            LogisticRegression().fit(x, y),
            RandomForestClassifier(n_estimators=5, random_state=0).fit(x, y),
            Ridge().fit(x, x[:, 2]),
        ]
        rows = [x[:1], x[:37], x[5]]

        def outputs():
            out = []
            for m in models:
                for r in rows:
                    r2 = r.reshape(1, -1) if r.ndim == 1 else r
                    out.append(m.predict(r2))
                    if hasattr(m, "predict_proba"):
                        out.append(m.predict_proba(r2))
            return out

        before = outputs()
        assert sklearn_checks.install()
        after = outputs()
        assert all(np.array_equal(a, b) for a, b in zip(before, after, strict=True))
        print("same", len(after))
        """
    )
    run = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["same", "15"]


def test_nothing_is_wrapped_where_the_module_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sklearn_checks, "_installed", False)
    monkeypatch.setattr(sklearn_checks, "_MODULE", "modelrouter_no_such_module.dependencies")
    assert sklearn_checks.install() is False


def test_nothing_is_wrapped_where_narwhals_answers_otherwise(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import types

    fake = types.ModuleType("fake_dependencies")
    fake.is_into_dataframe = lambda obj: True  # type: ignore[attr-defined]
    fake.is_into_series = lambda obj: False  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "fake_dependencies", fake)
    monkeypatch.setattr(sklearn_checks, "_installed", False)
    monkeypatch.setattr(sklearn_checks, "_MODULE", "fake_dependencies")
    assert sklearn_checks.install() is False
    assert not hasattr(fake.is_into_series, "__modelrouter_fast__")
