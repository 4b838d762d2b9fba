"""Short names for the public Gemma 4 ONNX exports: `edge-agent models pull e2b` means the hub repo
onnx-community/gemma-4-E2B-it-ONNX, variant q4 (GEMMA4.md: the layout transformers.js runs).

The sizes are estimates, not measurements of the published files (this project's machines have no access to
the hub): the INT4 weights of the text decoder (README, Performance: the real E2B reads ~1.43 GB per token),
the embeddings and the two encoders, rounded up. RAM is what the model needs at a 4k context with the usual
margin; `edge-agent doctor` computes the exact figure from the files once they are pulled."""

from __future__ import annotations

from dataclasses import dataclass

from edge_agent.model.store.hub import HUB_PREFIX


@dataclass(frozen=True)
class CatalogModel:
    """One public export under a short name."""

    short_name: str
    repo_id: str
    variant: str
    download_gb: float  # about: an estimate (see the module's docstring)
    ram_gb: float  # about: an estimate
    note: str

    @property
    def source(self) -> str:
        """The hf:// source the short name stands for."""
        return f"{HUB_PREFIX}{self.repo_id}"

    @property
    def directory(self) -> str:
        """The model directory a pull creates under the models directory (the repo's name, as for hf://)."""
        return self.repo_id.split("/")[1]


CATALOG = (
    CatalogModel("e2b", "onnx-community/gemma-4-E2B-it-ONNX", "q4", 3.0, 3.0, "a 4 GB board (Pi 5 4 GB, Orin Nano)"),
    CatalogModel("e4b", "onnx-community/gemma-4-E4B-it-ONNX", "q4", 5.0, 5.5, "an 8 GB board"),
)


def find(name: str) -> CatalogModel | None:
    """The catalog entry for a short name (any case), else None."""
    return next((model for model in CATALOG if model.short_name == name.lower()), None)


def describe_available() -> list[str]:
    """`models list --available`: one line per short name."""
    lines = [f"{'NAME':<5} {'HUB REPO':<38} {'VARIANT':<8} {'DOWNLOAD':<12} {'RAM NEEDED':<12} FOR"]
    for model in CATALOG:
        download, ram = f"about {model.download_gb:.0f} GB", f"about {model.ram_gb:g} GB"
        repo = f"{model.short_name:<5} {model.repo_id:<38} {model.variant:<8}"
        lines.append(f"{repo} {download:<12} {ram:<12} {model.note}")
    lines.append("Sizes are estimates for the default variant; `edge-agent doctor -c CONFIG` gives the exact need.")
    lines.append("Pull one with: edge-agent models pull e2b  (--variant for another; needs edge-agent-node[hub])")
    return lines


def as_json() -> list[dict[str, object]]:
    """`models list --available --json`."""
    return [
        {
            "name": m.short_name,
            "repo_id": m.repo_id,
            "source": m.source,
            "variant": m.variant,
            "download_gb_about": m.download_gb,
            "ram_gb_about": m.ram_gb,
            "directory": m.directory,
        }
        for m in CATALOG
    ]
