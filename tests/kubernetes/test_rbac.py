"""``check`` asks SelfSubjectAccessReviews for every verb/resource the provider uses."""

from __future__ import annotations

import pytest

from providers.kubernetes import REQUIRED_PERMISSIONS
from scaler.testing.fake_kube import FakeKube
from tests.kubernetes.conftest import ProviderFactory

pytestmark = pytest.mark.kubernetes

ALL = {(g, r, v) for g, r, verbs in REQUIRED_PERMISSIONS for v in verbs}


async def test_check_all_allowed(kube: FakeKube, make_provider: ProviderFactory) -> None:
    kube.allowed = set(ALL)
    findings = await make_provider().check({"small": {}})
    assert [f.level for f in findings] == ["ok"], findings
    reviews = [r for r in kube.requests if r[1].endswith("selfsubjectaccessreviews")]
    assert len(reviews) == len(ALL)


async def test_check_names_missing_permissions(kube: FakeKube, make_provider: ProviderFactory) -> None:
    kube.allowed = ALL - {("", "pods", "watch"), ("", "secrets", "create")}
    findings = await make_provider(extra_namespaces=["ci"]).check({"small": {"namespace": "ci"}})
    (finding,) = findings
    assert finding.level == "error"
    for ns in ("default", "ci"):
        assert f"watch pods in namespace {ns}" in finding.message
        assert f"create secrets in namespace {ns}" in finding.message
    assert "list pods" not in finding.message


async def test_check_reports_bad_pool_options_and_unreachable_api(
    kube: FakeKube, make_provider: ProviderFactory
) -> None:
    findings = await make_provider().check({"p": {"namespace": "elsewhere"}, "q": {"container_mode": "dind"}})
    errors = [f for f in findings if f.level == "error"]
    assert {f.subject for f in errors} == {"provider k8s pool p", "provider k8s pool q"}
    kube.fail_requests = True
    findings = await make_provider().check({})
    assert findings[-1].level == "error" and "cannot reach" in findings[-1].message


def test_required_permissions_shape() -> None:
    assert ("", "pods", ("create", "delete", "get", "list", "watch")) in REQUIRED_PERMISSIONS
    assert all(isinstance(v, tuple) for _, _, v in REQUIRED_PERMISSIONS)
