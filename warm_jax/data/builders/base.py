"""Shared parts of the real-data TFDS builders: the base class, features, checked downloads.

Every builder here is a `tfds.core.GeneratorBasedBuilder` whose `_generate_examples` maps the raw
download format onto the common schema of `warm_jax.data.schema` and validates each record there
(errors name the downloaded file and the record). Build with `file_format='array_record'` and read
back with `as_data_source` (numpy only, no TensorFlow): see `registry.load_split`.

Downloads: `dl_manager.download(urls)` then, where a SHA-256 of the published file is known
(`SHA256` in each module), the file is checked here before it is read (TFDS's own checksum file
needs the exact byte size too, which the public pages do not state; see
`RealDataBuilder._checksums_path` for recording both on a first download). Compressed files
(.gz, .xz) are read as streams by `schema.open_text`, without an extract step: TFDS cannot extract
.xz and the .jsonl.gz files are small. Set `VERIFY_SHA256 = False` to skip the check.
"""

from __future__ import annotations

import hashlib
import os

import numpy as np
import tensorflow_datasets as tfds
from absl import logging
from etils import epath

from warm_jax.data import schema

VERIFY_SHA256 = True


def sha256_of(path) -> str:
  h = hashlib.sha256()
  with open(os.fspath(path), "rb") as f:
    for chunk in iter(lambda: f.read(1 << 20), b""):
      h.update(chunk)
  return h.hexdigest()


def verify_sha256(path, expected: str, url: str) -> None:
  got = sha256_of(path)
  if got != expected:
    raise ValueError(
        f"{os.fspath(path)} (downloaded from {url}) has SHA-256 {got}, expected {expected}: the "
        "published file changed or the download is corrupt. Delete it and retry, or set "
        "warm_jax.data.builders.base.VERIFY_SHA256 = False to accept it.")


def download(dl_manager, urls: dict, sha256: dict | None = None) -> dict:
  """Downloads {key: url} and returns {key: local path}, checking the known SHA-256 values."""
  paths = dl_manager.download(urls)
  if VERIFY_SHA256 and sha256:
    for key, url in urls.items():
      if url in sha256:
        verify_sha256(paths[key], sha256[url], url)
  return paths


def text_features(kind: str, **extra) -> tfds.features.FeaturesDict:
  """Features of the common schema of `kind` ('preference' or 'prompt') plus `extra` features.

  `response` is a feature of prompt data sets that have one: pass `response=tfds.features.Text()`.
  """
  text = tfds.features.Text()
  feats = {name: text for name in schema.REQUIRED_FIELDS[kind]}
  feats.update(extra)
  return tfds.features.FeaturesDict(feats)


def labels_feature(objectives) -> tfds.features.FeaturesDict:
  return tfds.features.FeaturesDict({o: np.int64 for o in objectives})


class RealDataBuilder(tfds.core.GeneratorBasedBuilder):
  """Base of the real-data builders: record order = file order (shuffle in the input pipeline)."""

  # TFDS 4.9.x computes this with `importlib_resources`, which it only requires on Python < 3.9;
  # the answer is the file of the concrete builder class.
  @tfds.core.utils.classproperty
  @classmethod
  def code_path(cls) -> epath.Path:
    import sys
    return epath.Path(sys.modules[cls.__module__].__file__)

  # TFDS keeps (url, size, sha256) in one `checksums.tsv` per builder *directory*; these builders
  # share a directory, so each gets `<name>_checksums.tsv` instead. Written by a build with
  # `tfds.download.DownloadConfig(register_checksums=True)`; once present (and shipped as package
  # data), TFDS checks every download against it. `URL_INFOS` (class attribute) adds known ones.
  @tfds.core.utils.classproperty
  @classmethod
  def _checksums_path(cls) -> epath.Path:
    return cls.code_path.parent / f"{cls.name}_checksums.tsv"

  @tfds.core.utils.classproperty
  @classmethod
  def url_infos(cls):
    infos = dict(getattr(cls, "URL_INFOS", None) or {})
    if cls._checksums_path.exists():
      infos.update(tfds.core.download.checksums.load_url_infos(cls._checksums_path))
    return infos or None

  # Each split reads its files only once; `kind` is what `validate_record` checks.
  KIND = schema.PREFERENCE

  def _validated(self, record: dict, source, index) -> dict:
    return schema.validate_record(record, source=source, index=index, kind=self.KIND)

  def _record_or_skip(self, make_record, source, index) -> dict | None:
    """`make_record()` validated. A ValueError stops the build, unless the config has
    `skip_invalid=True`: then the record is dropped, its message logged and appended to the
    data set's metadata (`info.metadata['skipped']`, saved in metadata.json), and None returned."""
    try:
      return self._validated(make_record(), source, index)
    except ValueError as e:
      if not getattr(self.builder_config, "skip_invalid", False):
        raise
      logging.warning("skipping a malformed record: %s", e)
      self.info.metadata.setdefault("skipped", []).append(str(e))
      return None

  def _info_from(self, *, description: str, features, homepage: str, citation: str = ""):
    return self.dataset_info_from_configs(
        description=description, features=features, homepage=homepage, citation=citation,
        disable_shuffling=True, metadata=tfds.core.MetadataDict())


def source_name(path, url: str | None = None) -> str:
  """How a downloaded file is named in errors and ids: its published file name when known."""
  return os.path.basename(url) if url else os.path.basename(os.fspath(path))
