"""The terms each dataset is distributed under, declared once per source.

A source config's `licence` field (recorded on every sample as `source.licence`) defaults to its
dataset's `Licence.id`; `licence_of(id)` gives the full declaration back (name, terms, where they are
published, whether commercial use is allowed, the Hugging Face licence id) for the dataset card. An id
that no source declares (a recipe's own text, LAION's per-row LICENSE) is reported as written.

Web-link datasets record a per-image licence (LAION's LICENSE column, mostly unknown); their
dataset-level terms are declared in `DATASET_TERMS` by dataset name, for the card to state beside it.
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
    #: the Hugging Face Hub licence id for the card's metadata; "other" when the Hub has none for it
    hub: str = "other"


FAIRFACE = Licence(
    id="CC-BY-4.0",
    name="Creative Commons Attribution 4.0 (CC BY 4.0)",
    terms="Use, share and adapt with attribution (FairFace, Kärkkäinen and Joo, 2021).",
    url="https://creativecommons.org/licenses/by/4.0/",
    commercial=True,
    hub="cc-by-4.0",
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

LAION_400M = Licence(
    id="laion-400m",
    name="LAION-400M metadata CC BY 4.0; images owned by their rights holders",
    terms="LAION publishes URLs, alt-texts and scores under CC BY 4.0; the images behind the URLs are not "
    "LAION's and were not licensed to LAION or to you: their copyright stays with their owners. LAION-Face "
    "(Zheng et al., 2022) is a subset of it.",
    url="https://laion.ai/blog/laion-400-open-dataset/",
    commercial=None,
)
FACECAPTION_15M = Licence(
    id="facecaption-15m",
    name="FaceCaption-15M annotations CC BY 4.0; images owned by their rights holders",
    terms="The captions and face boxes are published under CC BY 4.0 (Dai et al., 2024); the images are "
    "LAION-Face URLs whose copyright stays with their owners.",
    url="https://huggingface.co/datasets/OpenFace-CQUPT/FaceCaption-15M",
    commercial=None,
)

#: dataset-level terms of sources whose samples carry a per-image licence (by the sources' default names)
DATASET_TERMS: dict[str, Licence] = {"laion": LAION_400M, "facecaption15m": FACECAPTION_15M}

DECLARED: dict[str, Licence] = {lic.id: lic for lic in (FAIRFACE, CELEBA, RAFDB, UTKFACE, LAION_400M, FACECAPTION_15M)}


def licence_of(licence_id: str | None) -> Licence | None:
    """The declaration behind a `source.licence` value, or None when no source declares it."""
    return DECLARED.get(licence_id or "")
