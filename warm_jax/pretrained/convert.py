"""Import of Hugging Face checkpoint directories into warm_jax, and export back to them.

    pre = load_hf("path/to/Llama-3.2-1B", mesh=mesh, rules=rules, dtype="bfloat16")
    pre.kind, pre.family          # 'lm' or 'rm' (a *ForSequenceClassification), 'llama'
    pre.model()                   # LanguageModel / RewardModel of pre.model_cfg
    pre.params                    # warm_jax params, each array on its sharding of `mesh`

    export_hf(params, model_cfg, "out/rm_hf", tokenizer_dir="path/to/Llama-3.2-1B",
              hf_config=pre.hf_config)

Import reads config.json (`families.model_config_from_hf`), checks the weights against it before
any array is made (every tensor present, none left over, each shape the config implies, each file
long enough), then builds each parameter with `jax.make_array_from_callback`: every device shard
is a slice of an mmap'd safetensors view, converted to the asked dtype, so no host ever holds the
whole model (nor any whole tensor of a sharded parameter). A `*ForSequenceClassification` with one
label becomes a RewardModel whose head has no bias (its `score` layer has none); a `*ForCausalLM`
(or a multimodal gemma3's text model) a LanguageModel.

Export writes the family's `*ForSequenceClassification` (a RewardModel, a WARM average among them)
or `*ForCausalLM` (a LanguageModel) layout: safetensors, config.json, and the tokenizer files of a
directory when given, into a temporary sibling directory that is renamed to the target only once
complete (an interrupted export leaves only `<out>.tmp-*`). Tensors are gathered one at a time. A
model trained here is exported as Llama: a tied head that divides logits by sqrt(d_model) becomes an
untied lm_head = embedding / sqrt(d_model); a reward head bias other than 0 cannot be written into
`score` and is refused unless `drop_reward_bias=True` (a constant shift: pairwise preferences do not
change). Import -> export -> import gives back the same arrays bit for bit.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.sharding import Mesh

from warm_jax import configs
from warm_jax import sharding as shd
from warm_jax.models import LanguageModel, RewardModel
from warm_jax.pretrained import families
from warm_jax.pretrained import safetensors_io as st
from warm_jax.pretrained.layout import LM, RM, TensorMap, check_layout, tensor_layout

CONFIG_FILE = "config.json"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "tokenizer_config.json",
                   "special_tokens_map.json", "chat_template.jinja", "chat_template.json",
                   "added_tokens.json", "vocab.json", "merges.txt", "generation_config.json")
DEFAULT_SHARD_BYTES = 5 * 2 ** 30
_DTYPES = {"float32": np.float32, "bfloat16": jnp.bfloat16, "float16": np.float16}
# Tensors of older checkpoints that are buffers recomputed from the config, not weights.
_IGNORED_SUFFIXES = (".rotary_emb.inv_freq",)
# A multimodal gemma3 checkpoint: the text model's tensors under these prefixes (older, newer).
_GEMMA3_TEXT_PREFIXES = {"language_model.model.": "model.", "model.language_model.": "model.",
                         "language_model.lm_head.": "lm_head."}
_GEMMA3_OTHER_PREFIXES = ("vision_tower.", "multi_modal_projector.", "model.vision_tower.",
                          "model.multi_modal_projector.")


@dataclasses.dataclass
class Pretrained:
  """An imported checkpoint: what it is, its warm_jax model config and params, its config.json."""
  kind: str  # 'lm' (LanguageModel) or 'rm' (RewardModel)
  family: str
  model_cfg: ml_collections.ConfigDict
  params: dict
  hf_config: dict  # the (text) config.json as read: export passes its token ids on
  path: str

  def model(self) -> nn.Module:
    return (RewardModel if self.kind == RM else LanguageModel)(self.model_cfg)


@dataclasses.dataclass
class HFSpec:
  """What a directory's config.json says, before any weight is read."""
  kind: str
  family: str
  model_cfg: ml_collections.ConfigDict
  hf_config: dict
  rename: Any  # checkpoint tensor name -> the text model's name (or None: not part of it)
  config_path: str


HF_PREFIX = configs.HF_PREFIX  # "hf:"


def hf_dir(path) -> str | None:
  """The Hugging Face model directory that `path` names, or None: 'hf:DIR' names DIR (which must
  exist), and so does a directory holding config.json and safetensors weights (model.safetensors
  or its sharded index); anything else (a warm_jax run or checkpoint directory, '') is None."""
  if not isinstance(path, str) or not path:
    return None
  if path.startswith(HF_PREFIX):
    d = os.path.expanduser(path[len(HF_PREFIX):])
    if not os.path.isdir(d):
      from warm_jax.errors import MissingInput
      raise MissingInput(f"{path}: {d} is not a directory (hf:DIR names a Hugging Face model "
                         "directory: config.json and safetensors weights)")
    return d
  if os.path.isfile(os.path.join(path, CONFIG_FILE)) and (
      os.path.isfile(os.path.join(path, st.SINGLE_FILE))
      or os.path.isfile(os.path.join(path, st.INDEX_FILE))):
    return path
  return None


def _read_json(path: str) -> dict:
  try:
    with open(path) as f:
      out = json.load(f)
  except json.JSONDecodeError as e:
    raise st.CheckpointError(f"{path}: not valid JSON ({e})") from None
  if not isinstance(out, dict):
    raise st.CheckpointError(f"{path}: a JSON {type(out).__name__}, not an object")
  return out


def _kind(hf: dict, path: str) -> str:
  """'rm' for a *ForSequenceClassification with one label, 'lm' for a *ForCausalLM (or a
  multimodal gemma3's *ForConditionalGeneration); other heads fail naming `architectures`."""
  archs = hf.get("architectures") or []
  if not (isinstance(archs, list) and len(archs) == 1 and isinstance(archs[0], str)):
    raise st.CheckpointError(f"{path}: architectures={archs!r}: expected one class name "
                             "(*ForCausalLM or *ForSequenceClassification)")
  arch = archs[0]
  if arch.endswith("ForSequenceClassification"):
    labels = len(hf["id2label"]) if isinstance(hf.get("id2label"), dict) else hf.get("num_labels", 2)
    if labels != 1:
      raise st.CheckpointError(f"{path}: {arch} with {labels} labels (id2label / num_labels): a "
                               "reward model has exactly one")
    return RM
  if arch.endswith(("ForCausalLM", "ForConditionalGeneration")):
    return LM
  raise st.CheckpointError(f"{path}: architectures={archs!r}: warm_jax imports *ForCausalLM and "
                           "*ForSequenceClassification models only")


def _gemma3_text_name(name: str) -> str | None:
  for old, new in _GEMMA3_TEXT_PREFIXES.items():
    if name.startswith(old):
      return new + name[len(old):]
  if name.startswith(_GEMMA3_OTHER_PREFIXES):
    return None
  return name


def read_spec(path: str, dtype: str = "float32", max_len: int | None = None) -> HFSpec:
  """The kind, family and warm_jax model config of an HF directory (config.json only); dtype is
  the compute dtype of the model config, max_len its decode-cache size."""
  if not os.path.isdir(path):
    raise st.CheckpointError(f"{path}: not a directory")
  config_path = os.path.join(path, CONFIG_FILE)
  if not os.path.exists(config_path):
    raise st.CheckpointError(f"{path}: no {CONFIG_FILE}")
  hf = _read_json(config_path)
  kind = _kind(hf, config_path)
  rename = lambda name: name
  if hf.get("model_type") == "gemma3":  # multimodal: keep the text model
    text = hf.get("text_config")
    if not isinstance(text, dict):
      raise st.CheckpointError(f"{config_path}: model_type 'gemma3' without a text_config object")
    text = dict(text)
    text.setdefault("model_type", "gemma3_text")
    for key in ("tie_word_embeddings", "bos_token_id", "eos_token_id", "pad_token_id"):
      if key in hf and key not in text:
        text[key] = hf[key]
    text.pop("architectures", None)
    hf, rename = text, _gemma3_text_name
    config_path += " (text_config)"
  family = families.family_of(hf, config_path)
  if dtype not in configs.DTYPES:
    raise ValueError(f"dtype={dtype!r}: must be one of {configs.DTYPES}")
  model_cfg = families.model_config_from_hf(hf, family, config_path, dtype=dtype, max_len=max_len)
  return HFSpec(kind, family, model_cfg, hf, rename, config_path)


def _ignored(name: str) -> bool:
  return name.endswith(_IGNORED_SUFFIXES)


def check_tensors(ckpt: st.Checkpoint, layout: list[TensorMap], spec: HFSpec) -> None:
  """Every tensor of the layout is present, floating point and of the shape the config implies;
  no tensor is left over. Errors name the file, the tensor and the config."""
  for m in layout:
    if m.name not in ckpt:
      raise st.CheckpointError(f"{spec.config_path}: tensor {m.name!r} ({m.where}) is missing from "
                               f"the weights ({', '.join(os.path.basename(f) for f in ckpt.files)})")
    t = ckpt.info(m.name)
    if t.shape != m.hf_shape:
      raise st.CheckpointError(
          f"{t.file}: tensor {m.name!r} has shape {list(t.shape)} but {spec.config_path} implies "
          f"{list(m.hf_shape)} (hidden_size={spec.model_cfg.d_model}, heads="
          f"{spec.model_cfg.n_heads}/{spec.model_cfg.n_kv_heads or spec.model_cfg.n_heads}, "
          f"head_dim={configs.head_dim(spec.model_cfg)}, intermediate_size="
          f"{spec.model_cfg.d_ff}, vocab_size={spec.model_cfg.vocab_size})")
    if t.dtype.kind != "f" and t.dtype != np.dtype(jnp.bfloat16):
      raise st.CheckpointError(f"{t.file}: tensor {m.name!r} is {t.dtype}, not floating point "
                               "(quantized weights are not supported)")
  used = {m.name for m in layout}
  extra = [n for n in ckpt.names() if n not in used and not _ignored(n)]
  if extra:
    where = ckpt.info(extra[0]).file
    raise st.CheckpointError(f"{where}: tensor {extra[0]!r} is not part of the model {spec.config_path} "
                             f"describes ({len(extra)} such tensors: {extra[:5]})")


def _abstract(model: nn.Module) -> Any:
  dummy = jnp.ones((1, 8), jnp.int32)
  return jax.eval_shape(lambda: model.init(jax.random.key(0), dummy)["params"])


def _single_device_mesh() -> Mesh:
  return shd.make_mesh(("data", "fsdp", "tensor"), (1, 1, 1), devices=jax.devices()[:1])


def _set(tree: dict, path: tuple[str, ...], value) -> None:
  for k in path[:-1]:
    tree = tree.setdefault(k, {})
  tree[path[-1]] = value


def _load_one(ckpt, m: TensorMap, sharding, dtype) -> jax.Array:
  """One parameter on `sharding`: each addressable shard converts only its slice of the tensor
  (an mmap'd view, in the warm_jax layout) to `dtype`; the tensor's pages are then released
  (`Checkpoint.release`), so the file's pages never pile up in the process's memory."""
  view = m.to_warm(ckpt.array(m.name))

  def shard(index):
    return np.asarray(view[index]).astype(dtype)
  out = jax.make_array_from_callback(m.shape, sharding, shard)
  del view
  ckpt.release(m.name)
  return out


def load_hf(path: str, *, mesh: Mesh | None = None, rules=None, dtype: str = "float32",
            compute_dtype: str | None = None, max_len: int | None = None,
            kind: str | None = None) -> Pretrained:
  """Imports an HF directory (config.json + model.safetensors or a sharded index) as warm_jax
  params of `dtype` on `mesh` (default: one device) laid out by `rules` (default:
  configs.DEFAULT_RULES). compute_dtype (default: dtype) goes into the model config; max_len is
  the decode-cache size (default: max_position_embeddings). `kind` ('lm' / 'rm'), when given,
  must be what the directory holds. Every check runs before any array is made."""
  if dtype not in _DTYPES:
    raise ValueError(f"dtype={dtype!r}: must be one of {tuple(_DTYPES)}")
  spec = read_spec(path, compute_dtype or dtype, max_len)
  if kind is not None and kind != spec.kind:
    raise st.CheckpointError(f"{spec.config_path}: holds a {'reward' if spec.kind == RM else 'language'} "
                             f"model (architectures={spec.hf_config.get('architectures')}), not "
                             f"kind={kind!r}")
  return load_tensors(spec, st.open_checkpoint(path).rename(spec.rename), path, mesh=mesh,
                      rules=rules, dtype=dtype)


def load_tensors(spec: HFSpec, ckpt, path: str, *, mesh: Mesh | None = None, rules=None,
                 dtype: str = "float32") -> Pretrained:
  """`load_hf` of an opened checkpoint: any object with the reading interface of
  `safetensors_io.Checkpoint` (names, info, array, release, close, files), e.g. the streamed
  average of several directories (`warm_jax.averaging.hf`). Checks every tensor first."""
  layout = tensor_layout(spec.model_cfg, spec.kind)
  check_tensors(ckpt, layout, spec)
  model = (RewardModel if spec.kind == RM else LanguageModel)(spec.model_cfg)
  boxed = _abstract(model)
  check_layout(layout, nn.unbox(boxed))
  mesh = mesh or _single_device_mesh()
  rules = configs.DEFAULT_RULES if rules is None else rules
  shardings = shd.tree_shardings(boxed, mesh, rules)
  params: dict = {}
  try:
    for m in layout:
      _set(params, m.path, _load_one(ckpt, m, _get(shardings, m.path), _DTYPES[dtype]))
  finally:
    ckpt.close()  # the arrays hold copies, never views of the files
  return Pretrained(spec.kind, spec.family, spec.model_cfg, params, spec.hf_config, path)


def _get(tree, path):
  for k in path:
    tree = tree[k]
  return tree


# ----------------------------------------------------------------------------------------------
# Export.


def _host(x) -> np.ndarray:
  """A whole parameter on this host (gathered across processes when sharded over several)."""
  if isinstance(x, jax.Array) and not x.is_fully_addressable:
    from jax.experimental import multihost_utils
    return np.asarray(multihost_utils.process_allgather(x, tiled=True))
  return np.asarray(x)


def _params_kind(params: dict) -> str:
  if "reward_head" in params:
    return RM
  if "decoder" in params:
    return LM
  raise ValueError(f"params with top-level keys {sorted(params)}: neither a RewardModel's "
                   "(decoder, reward_head) nor a LanguageModel's (decoder[, lm_head])")


def _reward_bias(params: dict) -> float:
  bias = params["reward_head"].get("bias")
  return 0.0 if bias is None else float(np.asarray(_host(bias)).reshape(-1)[0])


def _kept_keys(hf_config: dict | None, pad_id, bos_id, eos_id) -> dict:
  """Keys of the exported config.json that the architecture does not decide: bos/eos/pad ids (the
  arguments, else the imported config's, else, for a model trained here, warm_jax's own tokenizer
  ids 1/2/0) and the imported config's max_position_embeddings (the model's context; config.model
  .max_len is only the size of warm_jax's decode cache)."""
  from warm_jax.data import tokenizer as sp_tokenizer
  native = {"pad_token_id": sp_tokenizer.PAD_ID, "bos_token_id": sp_tokenizer.BOS_ID,
            "eos_token_id": sp_tokenizer.EOS_ID}
  out = {}
  if hf_config is not None and "max_position_embeddings" in hf_config:
    out["max_position_embeddings"] = hf_config["max_position_embeddings"]
  for key, given in (("pad_token_id", pad_id), ("bos_token_id", bos_id), ("eos_token_id", eos_id)):
    if given is not None:
      out[key] = given
    elif hf_config is not None:
      out[key] = hf_config.get(key)
    else:
      out[key] = native[key]
  return out


def export_entries(params: dict, model_cfg: ml_collections.ConfigDict, kind: str,
                   dtype: str) -> tuple[list[st.TensorEntry], bool]:
  """The safetensors entries of an export (each computed only when written) and whether the
  exported config ties lm_head to the embedding."""
  np_dtype = np.dtype(_DTYPES[dtype])
  layout = tensor_layout(model_cfg, kind)
  f = lambda name: configs.model_field(model_cfg, name)
  untie_scaled = kind == LM and model_cfg.tie_embeddings and f("scale_tied_logits")
  entries = []
  for m in layout:
    if _get_or_none(params, m.path) is None:
      raise ValueError(f"params lack {m.where} (HF tensor {m.name}), which config.model implies")
    leaf = _get(params, m.path)
    if tuple(leaf.shape) != m.shape:
      raise ValueError(f"params {m.where} has shape {list(leaf.shape)} but config.model implies "
                       f"{list(m.shape)}")
    produce = (lambda m=m, leaf=leaf: m.to_hf(_host(leaf)).astype(np_dtype))
    entries.append(st.TensorEntry(m.name, m.hf_shape, np_dtype, produce))
  if untie_scaled:
    emb = _get(params, ("decoder", "embed", "embedding"))
    scale = np.float32(1.0) / np.sqrt(np.float32(model_cfg.d_model))
    produce = lambda: (_host(emb).astype(np.float32) * scale).astype(np_dtype)
    entries.append(st.TensorEntry("lm_head.weight", tuple(emb.shape), np_dtype, produce))
  # A reward model has no LM head, but its config says what the backbone's was: tied unless it
  # divided by sqrt(d_model) (which HF cannot tie).
  tied = bool(model_cfg.tie_embeddings and not f("scale_tied_logits"))
  return entries, tied


def _get_or_none(tree, path):
  for k in path:
    if not isinstance(tree, dict) or k not in tree:
      return None
    tree = tree[k]
  return tree


def export_hf(params: dict, model_cfg: ml_collections.ConfigDict, out_dir: str, *,
              family: str | None = None, hf_config: dict | None = None,
              tokenizer_dir: str | None = None, dtype: str = "float32",
              pad_id: int | None = None, bos_id: int | None = None, eos_id: int | None = None,
              drop_reward_bias: bool = False, overwrite: bool = False,
              max_shard_bytes: int = DEFAULT_SHARD_BYTES, legacy_keys: bool = False) -> str:
  """Writes a RewardModel's params as the family's *ForSequenceClassification (num_labels 1) or a
  LanguageModel's as its *ForCausalLM into `out_dir` (a new directory; `overwrite` replaces an
  existing one), stored in `dtype`. family: default infer_family(model_cfg). hf_config: the
  imported config.json, whose token ids and max_position_embeddings are kept (else warm_jax's
  pad/bos/eos 0/1/2 and config.model.max_len; the id arguments override both). tokenizer_dir:
  its tokenizer files are copied. A PPO value head is not exported. legacy_keys: config.json also
  carries transformers 4.x's RoPE keys (rope_theta, rope_scaling, ...) for readers pinned to 4.x,
  which would otherwise miss rope_parameters and fall back to their defaults. Returns out_dir."""
  configs.validate_model(model_cfg)
  kind = _params_kind(params)
  family = family or families.infer_family(model_cfg)
  families.check_exportable(model_cfg, family)
  if dtype not in _DTYPES:
    raise ValueError(f"dtype={dtype!r}: must be one of {tuple(_DTYPES)}")
  if os.path.exists(out_dir) and not overwrite:
    raise FileExistsError(f"{out_dir} exists; pass overwrite=True to replace it")
  if kind == RM:
    bias = _reward_bias(params)
    if bias != 0.0 and not drop_reward_bias:
      raise ValueError(
          f"reward_head/bias={bias!r}: {families.CLASSES[family][1]}'s score layer has no bias, "
          "so this reward model cannot be written exactly. Pass drop_reward_bias=True to drop it: "
          f"every reward shifts by {-bias!r}, and pairwise preferences (reward differences) do "
          "not change")
  if tokenizer_dir is not None and not os.path.isdir(tokenizer_dir):
    raise FileNotFoundError(f"tokenizer_dir {tokenizer_dir} is not a directory")
  entries, tied = export_entries(params, model_cfg, kind, dtype)
  config = families.hf_config_from_model(
      model_cfg, family, kind, tie_word_embeddings=tied, dtype=dtype,
      overrides=_kept_keys(hf_config, pad_id, bos_id, eos_id), legacy_keys=legacy_keys)
  if jax.process_index() != 0:  # other processes take part in the gathers only
    for e in entries:
      e.produce()
    return out_dir

  def fill(tmp):
    st.write_checkpoint(tmp, entries, max_shard_bytes, metadata={"format": "pt"})
    write_json(os.path.join(tmp, CONFIG_FILE), config)
    copy_tokenizer_files(tokenizer_dir, tmp)
  return write_directory(out_dir, fill, overwrite)


def export_run(params: dict, config: dict, out_dir: str, **kwargs) -> str:
  """`export_hf` of a warm_jax run's params (or an average of runs) with the run's config (a
  dict, as checkpoints record it): config['model'] is the architecture, and when the run started
  from a Hugging Face model (config['data']['tokenizer'] = hf:DIR) that directory's config.json
  passes on its token ids and max_position_embeddings and its tokenizer files are copied.
  `kwargs`: export_hf's (dtype, drop_reward_bias, ...)."""
  model_cfg = ml_collections.ConfigDict(dict(config["model"]))
  tok = (config.get("data") or {}).get("tokenizer") or ""
  src = hf_dir(tok) if tok.startswith(HF_PREFIX) else None
  hf_config = read_spec(src).hf_config if src else None
  return export_hf(params, model_cfg, out_dir, hf_config=hf_config, tokenizer_dir=src, **kwargs)


def copy_tokenizer_files(src_dir: str | None, dst_dir: str) -> None:
  """Copies the tokenizer and generation files (`TOKENIZER_FILES`) that `src_dir` holds."""
  for name in TOKENIZER_FILES if src_dir else ():
    src = os.path.join(src_dir, name)
    if os.path.exists(src):
      shutil.copyfile(src, os.path.join(dst_dir, name))


def write_directory(out_dir: str, fill, overwrite: bool = False) -> str:
  """Makes `out_dir` atomically: `fill(tmp)` writes into a fresh temporary sibling directory,
  which is fsynced and renamed to `out_dir` only once complete (an existing out_dir is replaced
  when `overwrite`, else refused); an interrupted run leaves only `<out>.tmp-*`. Returns out_dir."""
  if os.path.exists(out_dir) and not overwrite:
    raise FileExistsError(f"{out_dir} exists; pass overwrite=True to replace it")
  parent = os.path.dirname(os.path.abspath(out_dir))
  os.makedirs(parent, exist_ok=True)
  tmp = tempfile.mkdtemp(prefix=os.path.basename(out_dir) + ".tmp-", dir=parent)
  try:
    fill(tmp)
    _fsync_dir(tmp)
    _replace_dir(tmp, out_dir, overwrite)
  finally:
    if os.path.exists(tmp):
      shutil.rmtree(tmp, ignore_errors=True)
  return out_dir


def write_json(path: str, obj: dict) -> None:
  with open(path, "w") as f:
    json.dump(obj, f, indent=2, sort_keys=True)
    f.write("\n")
    f.flush()
    os.fsync(f.fileno())


def _fsync_dir(path: str) -> None:
  fd = os.open(path, os.O_RDONLY)
  try:
    os.fsync(fd)
  finally:
    os.close(fd)


def _replace_dir(tmp: str, out_dir: str, overwrite: bool) -> None:
  """Renames the finished `tmp` to `out_dir`; an existing out_dir (overwrite) is first moved
  aside and removed after, so out_dir always holds a complete export or nothing."""
  old = None
  if os.path.exists(out_dir):
    if not overwrite:
      raise FileExistsError(f"{out_dir} exists")
    old = tempfile.mkdtemp(prefix=os.path.basename(out_dir) + ".old-",
                           dir=os.path.dirname(os.path.abspath(out_dir)))
    os.rmdir(old)
    os.rename(out_dir, old)
  os.rename(tmp, out_dir)
  _fsync_dir(os.path.dirname(os.path.abspath(out_dir)))
  if old:
    shutil.rmtree(old, ignore_errors=True)
