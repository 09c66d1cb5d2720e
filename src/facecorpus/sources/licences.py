"""The terms each dataset is distributed under, declared once per source.

A source config's `licence` field (recorded on every sample as `source.licence`) defaults to its
dataset's `Licence.id`; `licence_of(id)` gives the full declaration back (name, terms, where they are
published, whether commercial use is allowed) for the dataset card. An id that no source declares
(a recipe's own text, LAION's per-row LICENSE) is reported as written.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Licence:
    """A dataset's terms. `commercial` is None where the terms do not say."""

    id: str
    name: str
    terms: str
    url: str | None
    commercial: bool | None


FAIRFACE = Licence(
    id="CC-BY-4.0",
    name="Creative Commons Attribution 4.0 (CC BY 4.0)",
    terms="Use, share and adapt with attribution (FairFace, Kärkkäinen and Joo, 2021).",
    url="https://creativecommons.org/licenses/by/4.0/",
    commercial=True,
)
CELEBA = Licence(
    id="celeba-research-only",
    name="CelebA agreement (non-commercial research)",
    terms="Non-commercial research and educational use only; the images are not owned by CUHK and may not be "
    "redistributed or used commercially (Liu et al., 2015).",
    url="https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html",
    commercial=False,
)
RAFDB = Licence(
    id="raf-db-research-only",
    name="RAF-DB release agreement (research)",
    terms="Non-commercial research use under the agreement signed to obtain the database; no redistribution "
    "(Li, Deng and Du, 2017).",
    url="http://www.whdeng.cn/RAF/model1.html",
    commercial=False,
)
UTKFACE = Licence(
    id="utkface-non-commercial",
    name="UTKFace terms (non-commercial research)",
    terms="Non-commercial research use only; copyright of the images stays with their owners (Zhang, Song and "
    "Qi, 2017).",
    url="https://susanqq.github.io/UTKFace/",
    commercial=False,
)

DECLARED: dict[str, Licence] = {lic.id: lic for lic in (FAIRFACE, CELEBA, RAFDB, UTKFACE)}


def licence_of(licence_id: str | None) -> Licence | None:
    """The declaration behind a `source.licence` value, or None when no source declares it."""
    return DECLARED.get(licence_id or "")
