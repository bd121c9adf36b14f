"""The registry of source readers by name (``imprint ingest SOURCE``)."""

from __future__ import annotations

from imprint.ingest.base import Source

INGEST_SOURCES = ("ytvos", "vipseg", "ppr10k", "mvimgnet", "sav", "objaverse", "pixabay", "urls")
REMOTE_SOURCES = ("objaverse", "pixabay", "urls")  # fetched (and rendered / segmented) before they are read


def get_source(name: str) -> Source:
    if name == "ytvos":
        from imprint.ingest.ytvos import YouTubeVOS
        return YouTubeVOS()
    if name == "vipseg":
        from imprint.ingest.vipseg import VIPSeg
        return VIPSeg()
    if name == "ppr10k":
        from imprint.ingest.ppr10k import PPR10K
        return PPR10K()
    if name == "mvimgnet":
        from imprint.ingest.mvimgnet import MVImgNet
        return MVImgNet()
    if name == "sav":
        from imprint.ingest.sav import SAVSource
        return SAVSource()
    if name == "objaverse":
        from imprint.ingest.objaverse import ObjaverseSource
        return ObjaverseSource()
    if name == "pixabay":
        from imprint.ingest.pixabay import PixabaySource
        return PixabaySource()
    if name == "urls":
        from imprint.ingest.urls import UrlsSource
        return UrlsSource()
    raise ValueError(f"unknown source {name!r}; choose one of {', '.join(INGEST_SOURCES)} (or 'sample')")
