"""Image sizes, what each role image adds over the base, and the rebuild after a code change.

Sizes are those of the images `make build` makes (`docker image inspect`); a role
image's share is its size minus the base image's, and its extra history entries
(`docker history`) over the base's.

The rebuild is timed in a temporary clone of the repository, under the image prefix
airflow-ecs-bench/ so that the real images and their tags are not touched: first a
cold `make build NO_CACHE=1` (every step run afresh: apt, pip install of the locked
dependencies, our package), then one comment line appended to entrypoint/__init__.py
and `make build` again with the layer cache, the way a developer iterates. The plain
alternative is the cold build. The base image's layers (diff IDs) before and after
the change show which layers the change rebuilt. The bench images are removed at the
end.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VERSION = re.search(r'(?m)^version = "(.*)"', (ROOT / "pyproject.toml").read_text()).group(1)
PREFIX = os.environ.get("IMAGE_PREFIX", "airflow-ecs/")
BENCH_PREFIX = "airflow-ecs-bench/"
ROLES = ("scheduler", "worker", "webserver")
GOAL_ROLE_BYTES = 5_000_000
# The final stage's layers that hold our package: its files, its dist-info, its script.
OUR_PACKAGE = ("site-packages/entrypoint", "airflow_ecs-", "bin/airflow-ecs")


def docker(*args: str) -> str:
    return subprocess.run(["docker", *args], check=True, capture_output=True,
                          text=True).stdout


def size(image: str) -> int:
    return int(docker("image", "inspect", "--format", "{{.Size}}", image))


def history(image: str) -> list[dict]:
    """The image's history entries, oldest first, sizes in bytes."""
    lines = docker("history", "--no-trunc", "--human=false", "--format", "{{json .}}",
                   image).splitlines()
    entries = [json.loads(line) for line in reversed(lines)]
    for entry in entries:
        entry["Size"] = int(entry["Size"])
    return entries


def _makes_layer(created_by: str) -> bool:
    # Metadata instructions (ENV, LABEL, CMD, ...) are "#(nop)" entries without a layer;
    # COPY and ADD are "#(nop)" too but do write one.
    return "#(nop)" not in created_by or bool(re.search(r"#\(nop\)\s+(COPY|ADD)\b", created_by))


def layers(image: str) -> list[tuple[str, int, str]]:
    """(diff ID, size in bytes, instruction) of each filesystem layer, oldest first."""
    diff_ids = json.loads(docker("image", "inspect", "--format", "{{json .RootFS.Layers}}",
                                 image))
    entries = [e for e in history(image) if _makes_layer(e["CreatedBy"])]
    if len(entries) != len(diff_ids):
        # Not matched to history: keep the digests, without sizes or instructions.
        return [(d, -1, "?") for d in diff_ids]
    return [(d, e["Size"], e["CreatedBy"]) for d, e in zip(diff_ids, entries, strict=True)]


def instruction(created_by: str, width: int = 90) -> str:
    text = re.sub(r"^(\|\d+ (\S+=\S* )*)?/bin/(ba)?sh (-o pipefail )?-c (#\(nop\)\s+)?", "",
                  created_by).strip()
    # The legacy builder records COPY as "COPY --chown=U:Gdir:<sha256> in DEST".
    text = re.sub(r"^COPY (--chown=\S+?)?(dir|file):[0-9a-f]{64} in ", r"COPY \2 to ", text)
    text = re.sub(r"\s+", " ", text).replace("|", "\\|") or "(the Debian image, imported)"
    return f"`{text[:width]}{'...' if len(text) > width else ''}`"


def mb(n: int) -> str:
    return f"{n / 1e6:,.1f} MB" if abs(n) >= 100_000 else f"{n / 1e3:,.1f} kB"


def timed_build(repo: Path, *extra: str) -> tuple[float, dict[str, int], str]:
    """Run `make build` in repo; wall seconds, build.sh's per-image seconds, output."""
    started = time.monotonic()
    result = subprocess.run(["make", "-s", "build", f"IMAGE_PREFIX={BENCH_PREFIX}", *extra],
                            cwd=repo, capture_output=True, text=True)
    wall = time.monotonic() - started
    if result.returncode != 0:
        raise RuntimeError(f"make build {' '.join(extra)} failed in {repo}:\n"
                           f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    per_image = {m.group(1): int(m.group(2)) for m in
                 re.finditer(r"(?m)^build: \S+?/(\w+):\S+ done in (\d+) s$", result.stdout)}
    return wall, per_image, result.stdout


def dangling() -> set[str]:
    return set(docker("images", "--quiet", "--no-trunc", "--filter", "dangling=true").split())


def rebuild() -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="bench-images-"))
    repo = tmp / "repo"
    bench_images = [f"{BENCH_PREFIX}{name}:{VERSION}" for name in ("base", *ROLES)]
    untagged_before = dangling()
    try:
        subprocess.run(["git", "clone", "-q", str(ROOT), str(repo)], check=True)
        cold_wall, cold_each, _ = timed_build(repo, "NO_CACHE=1")
        before = layers(bench_images[0])
        before_id = docker("image", "inspect", "--format", "{{.Id}}", bench_images[0]).strip()
        with (repo / "entrypoint" / "__init__.py").open("a") as handle:
            handle.write("# one line changed, to time the rebuild\n")
        warm_wall, warm_each, _ = timed_build(repo)
        after = layers(bench_images[0])
        after_id = docker("image", "inspect", "--format", "{{.Id}}", bench_images[0]).strip()
        return {"cold": (cold_wall, cold_each), "warm": (warm_wall, warm_each),
                "before": before, "after": after, "new_id": before_id != after_id,
                "size": size(bench_images[0])}
    finally:
        # The role images first, then the base they are built on; then the images these
        # builds left untagged (their intermediate stages, the images the rebuild
        # replaced), newest first. Without --force: an image still in use stays.
        for image in reversed(bench_images):
            subprocess.run(["docker", "rmi", image], capture_output=True)
        left = dangling() - untagged_before
        created = {i: docker("image", "inspect", "--format", "{{.Created}}", i).strip()
                   for i in left}
        for image in sorted(left, key=created.get, reverse=True):
            subprocess.run(["docker", "rmi", image], capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)


def run() -> str:
    subprocess.run(["make", "-s", "build"], cwd=ROOT, check=True, capture_output=True)
    base = f"{PREFIX}base:{VERSION}"
    base_size = size(base)
    base_history = history(base)
    rows, role_adds = [], {}
    rows.append(f"| `{base}` | {mb(base_size)} | | {len(layers(base))} | |")
    for role in ROLES:
        image = f"{PREFIX}{role}:{VERSION}"
        entries = history(image)
        same_base = [e["ID"] for e in entries[:len(base_history)]] == \
            [e["ID"] for e in base_history]
        extra = entries[len(base_history):] if same_base else entries
        added = size(image) - base_size
        role_adds[role] = (added, extra, same_base)
        layer_bytes = sum(e["Size"] for e in extra if _makes_layer(e["CreatedBy"]))
        extra_layers = len(layers(image)) - len(layers(base))
        rows.append(f"| `{image}` | {mb(size(image))} | {added:,} B | "
                    f"{len(layers(image))} ({extra_layers:+d}) | "
                    f"{len(extra)} entries, layers {layer_bytes:,} B"
                    f"{'' if same_base else ' (NOT built on the current base image)'} |")

    result = rebuild()
    cold_wall, cold_each = result["cold"]
    warm_wall, warm_each = result["warm"]
    before, after = result["before"], result["after"]
    changed = [(i, layer) for i, layer in enumerate(after)
               if i >= len(before) or before[i][0] != layer[0]]
    changed_bytes = sum(max(layer[1], 0) for _, layer in changed)
    ours_only = bool(changed) and all(any(m in layer[2] for m in OUR_PACKAGE)
                                      for _, layer in changed)
    def note(i: int, layer: tuple[str, int, str]) -> str:
        # Same instruction and source checksum, new digest: the legacy builder's cache is
        # a chain, so every layer after the first changed one is built again.
        if i < len(before) and before[i][2] == layer[2]:
            return " (same source; rebuilt because it follows a changed layer)"
        return ""

    layer_rows = [f"| {i + 1} of {len(after)} | {mb(layer[1]) if layer[1] >= 0 else '?'} | "
                  f"{instruction(layer[2])}{note(i, layer)} | "
                  f"`{before[i][0][7:19] if i < len(before) else '-'}` -> `{layer[0][7:19]}` |"
                  for i, layer in changed]
    largest = max(before, key=lambda layer: layer[1])

    def each(times: dict[str, int]) -> str:
        return ", ".join(f"{name} {times[name]} s" for name in ("base", *ROLES) if name in times)

    role_goal = all(added < GOAL_ROLE_BYTES and sum(
        e["Size"] for e in extra) < GOAL_ROLE_BYTES and same_base
        for added, extra, same_base in role_adds.values())
    extra_lines = []
    for role, (_, extra, _) in role_adds.items():
        listed = "; ".join(f"{instruction(e['CreatedBy'], 60)} {e['Size']:,} B" for e in extra)
        extra_lines.append(f"- {role}: {listed or 'nothing'}")

    return "\n".join([
        "## Image sizes and rebuild time",
        "",
        "Sizes from `docker image inspect` (1 MB = 10^6 bytes). \"Adds over base\" is the role "
        "image's size minus the base image's; its history entries past the base's are listed "
        "below with their layer sizes.",
        "",
        "| image | size | adds over base | filesystem layers | extra history over base |",
        "| --- | --- | --- | --- | --- |",
        *rows,
        "",
        "What each role image adds over the base (`docker history`):",
        "",
        *extra_lines,
        "",
        f"Goal: each role image adds under 5 MB over the base: "
        f"**{'met' if role_goal else 'missed'}** ("
        + ", ".join(f"{role} {added:,} B" for role, (added, _, _) in role_adds.items()) + ").",
        "",
        "### Rebuild after a one-line change in entrypoint/",
        "",
        "In a temporary clone, images tagged airflow-ecs-bench/ (removed afterwards). Cold: "
        "`make build NO_CACHE=1` (`docker build --no-cache`: apt and the pip install of the "
        "locked dependencies run again; the Debian base image is already present). Rebuild: "
        "one comment line appended to entrypoint/__init__.py, then `make build` with the "
        "layer cache.",
        "",
        "| build | wall (all four images) | per image (build.sh) |",
        "| --- | --- | --- |",
        f"| cold, no layer cache | {cold_wall:.0f} s | {each(cold_each)} |",
        f"| after the one-line change, with the cache | {warm_wall:.1f} s | {each(warm_each)} |",
        "",
        f"The rebuild took {warm_wall / cold_wall:.3f} of the cold build's time "
        f"({cold_wall / warm_wall:.0f}x faster). Base image layers whose digest changed "
        f"({len(changed)} of {len(after)}; the base image is {mb(result['size'])}, its largest "
        f"layer {mb(largest[1])}, {instruction(largest[2], 50)}):",
        "",
        "| layer | size | instruction | diff ID before -> after |",
        "| --- | --- | --- | --- |",
        *(layer_rows or ["| none | | | |"]),
        "",
        f"Goal: the rebuild touches only our package's small layers: "
        f"**{'met' if ours_only else 'missed'}** ({len(changed)} layer(s), {mb(changed_bytes)} "
        f"in all, {changed_bytes / max(result['size'], 1):.4%} of the base image"
        f"{'' if result['new_id'] else '; the image ID did not change'}).",
    ])


if __name__ == "__main__":
    print(run())
