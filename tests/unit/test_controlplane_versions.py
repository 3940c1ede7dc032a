"""The supported-versions table of the local control plane: one knob picks a Kubernetes release,
bad values are refused by name, and every checked-in Go wrapper module pins what the table says
(so a build can never silently use another version)."""

from __future__ import annotations

import re

import pytest

from e2e.controlplane import components, pin

NEWEST, *_, OLDEST = components.RELEASES


def _go_mod(module: components.GoModule) -> str:
    return (module.directory / "go.mod").read_text()


def _requires(module: components.GoModule) -> dict[str, str]:
    """module -> version of every require line, in a block or not."""
    text = _go_mod(module)
    found = re.findall(r"^require (\S+) (\S+)", text, re.M)
    for block in re.findall(r"^require \((.*?)^\)", text, re.M | re.S):
        found += re.findall(r"^\t(\S+) (\S+)", block, re.M)
    return dict(found)


def test_default_is_the_newest_supported_release() -> None:
    assert components.selected({}) == NEWEST
    assert components.selected({components.VERSION_ENV: "  "}) == NEWEST
    minors = [tuple(map(int, r.minor.split("."))) for r in components.RELEASES]
    assert minors == sorted(minors, reverse=True)
    assert len(set(minors)) == len(minors)


@pytest.mark.parametrize("release", components.RELEASES, ids=lambda r: r.minor)
def test_a_minor_its_patch_and_the_v_form_all_name_the_release(
    release: components.Release,
) -> None:
    patch = release.kubernetes.lstrip("v")
    for value in (release.minor, patch, f"v{patch}", f" {release.kubernetes}\n"):
        assert components.selected({components.VERSION_ENV: value}) == release, value


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("1.34", ["not supported"]),
        ("1.38", ["not supported"]),
        ("v2.0.0", ["not supported"]),
        ("latest", ["not a Kubernetes version"]),
        ("1.37.x", ["not a Kubernetes version"]),
        (f"{OLDEST.minor}.999", ["is pinned at", OLDEST.kubernetes]),
    ],
)
def test_unsupported_values_are_refused_naming_the_variable_and_the_choices(
    value: str, words: list[str]
) -> None:
    with pytest.raises(components.UnsupportedVersion) as refused:
        components.selected({components.VERSION_ENV: value})
    message = str(refused.value)
    assert components.VERSION_ENV in message
    assert repr(value) in message
    for word in words:
        assert word in message
    if "pinned at" not in message:
        for release in components.RELEASES:
            assert release.minor in message
            assert release.kubernetes in message


def test_binaries_of_different_releases_have_different_cache_names() -> None:
    paths = {
        name: {components.binary_path(name, release) for release in components.RELEASES}
        for name in ("kube-apiserver", "kubectl", "etcd")
    }
    assert len(paths["kube-apiserver"]) == len(components.RELEASES)
    assert len(paths["kubectl"]) == len(components.RELEASES)
    for release in components.RELEASES:
        assert components.binary_path("kube-apiserver", release).name == (
            f"kube-apiserver-{release.kubernetes}"
        )
        assert components.binary_path("etcd", release).name == f"etcd-{release.etcd}"
    helm = {components.helm_path(major).name for major in components.HELM_VERSIONS}
    assert helm == {f"helm-{v}" for v in components.HELM_VERSIONS.values()}
    assert components.binary_path("helm") == components.helm_path(max(components.HELM_VERSIONS))


@pytest.mark.parametrize("release", components.RELEASES, ids=lambda r: r.minor)
def test_kubernetes_wrapper_pins_the_release_and_every_staging_module(
    release: components.Release,
) -> None:
    module = components.kubernetes_module(release)
    text = _go_mod(module)
    assert _requires(module)["k8s.io/kubernetes"] == release.kubernetes
    tag = "v0." + release.kubernetes.split(".", 1)[1]
    replaced = re.findall(r"^\t(k8s\.io/\S+) => (k8s\.io/\S+) (\S+)$", text, re.M)
    assert len(replaced) >= 31  # every staging module of the release (31 in 1.35, 33 in 1.36+)
    assert all(src == dst and version == tag for src, dst, version in replaced), replaced
    assert not re.search(r"=> \.", text), "a local path would not exist in the module cache"
    for package in module.binaries.values():
        assert f"\t{package}\n" in text
    assert (module.directory / "go.sum").stat().st_size > 0
    # The binaries report the release (kubectl version, helm's kubeVersion checks).
    assert f"-X k8s.io/component-base/version.gitVersion={release.kubernetes}" in module.ldflags


@pytest.mark.parametrize("release", components.RELEASES, ids=lambda r: r.minor)
def test_etcd_wrapper_pins_the_server_and_its_siblings_at_one_tag(
    release: components.Release,
) -> None:
    module = components.etcd_module(release.etcd)
    text = _go_mod(module)
    assert _requires(module)["go.etcd.io/etcd/server/v3"] == release.etcd
    siblings = re.findall(r"^\t(go\.etcd\.io/\S+) => \S+ (\S+)$", text, re.M)
    assert {name for name, _ in siblings} >= {
        "go.etcd.io/etcd/api/v3",
        "go.etcd.io/etcd/client/v3",
        "go.etcd.io/etcd/client/pkg/v3",
        "go.etcd.io/etcd/pkg/v3",
    }
    assert {version for _, version in siblings} == {release.etcd}


def test_kwok_and_both_helm_majors_are_pinned() -> None:
    assert _requires(components.KWOK)["sigs.k8s.io/kwok"] == components.KWOK_VERSION
    assert set(components.HELM_VERSIONS) == {3, 4}
    for major, version in components.HELM_VERSIONS.items():
        module = components.helm_module(major)
        assert _requires(module)[f"helm.sh/helm/v{major}"] == version
        assert f"-X helm.sh/helm/v{major}/internal/version.version={version}" in module.ldflags
    # Helm 3 is told its default Kubernetes (the minor of the client-go it builds with).
    helm3 = components.helm_module(3)
    minor = components.client_go_version(helm3.directory)[1]
    assert f"-X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor={minor}" in helm3.ldflags


def test_no_wrapper_module_asks_for_a_toolchain_download() -> None:
    for module in components.all_modules():
        assert not re.search(r"^toolchain ", _go_mod(module), re.M), module.directory_name


def test_every_directory_under_gomod_belongs_to_a_supported_release() -> None:
    used = {module.directory_name for module in components.all_modules()}
    present = {p.name for p in components.GOMOD_ROOT.iterdir() if p.is_dir()}
    assert present == used


def test_pin_copies_upstream_go_and_godebug_and_pins_only_real_replacements() -> None:
    upstream = "\n".join(
        [
            "module k8s.io/kubernetes",
            "",
            "go 1.25.0",
            "",
            "godebug default=go1.25",
            "",
            "replace (",
            "\tk8s.io/api => ./staging/src/k8s.io/api",
            "\tk8s.io/client-go => ./staging/src/k8s.io/client-go",
            "\tgo.etcd.io/etcd => ./FORBIDDEN_DEPENDENCY",
            ")",
        ]
    )
    text = pin.kubernetes_go_mod(components.Release("v1.35.9", etcd="v3.6.6"), upstream)
    assert "\ngo 1.25.0\n" in text
    assert "\ngodebug default=go1.25\n" in text
    assert "\tk8s.io/api => k8s.io/api v0.35.9\n" in text
    assert "\tk8s.io/client-go => k8s.io/client-go v0.35.9\n" in text
    assert "FORBIDDEN" not in text
    assert "require k8s.io/kubernetes v1.35.9\n" in text


def test_go_directive_is_read_from_each_module() -> None:
    for module in components.all_modules():
        # kube-score v1.20.0 declares go 1.23; the rest 1.24 or newer.
        assert module.go_directive() >= (1, 23), module.directory_name
    assert components.kubernetes_module(NEWEST).go_directive() >= (
        components.kubernetes_module(OLDEST).go_directive()
    )
