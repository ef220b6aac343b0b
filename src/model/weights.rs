//! Loading a checkpoint into the model, with every problem reported by tensor name.
//!
//! The model asks for tensors through a `VarBuilder`; the backend here answers from a
//! memory-mapped safetensors file and records what was missing, mis-shaped or unused, so
//! the naming lives in one place (the model's constructors) and the audit is a diff of names.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use candle_core::safetensors::MmapedSafetensors;
use candle_core::{DType, Device, Shape, Tensor};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::{Init, VarBuilder, VarMap};

use super::Model;
use super::config::ModelConfig;
use super::names::{self, is_buffer};
use crate::error::{Error, Result};
use crate::output::write_atomic;

/// What loading found beyond what the model needed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadReport {
    /// Checkpoint tensors the model did not use (e.g. a masked-LM head), by stored name.
    pub unused: Vec<String>,
    /// True when encoder tensors were stored without the architecture prefix
    /// (a base `BertModel`-style checkpoint).
    pub added_prefix: bool,
    /// dtype of the stored floating-point weights (the most common one).
    pub stored_dtype: Option<DType>,
    /// Number of values in the tensors the model uses.
    pub parameters: usize,
}

/// A problem met while the model requested its tensors.
#[derive(Debug)]
enum Problem {
    Missing(String),
    Shape {
        tensor: String,
        expected: Vec<usize>,
        found: Vec<usize>,
    },
    Dtype {
        tensor: String,
        dtype: String,
    },
    NonFinite(String),
}

struct Checkpoint {
    file: MmapedSafetensors,
    /// The model's name for a tensor → the name stored in the file.
    stored_name: HashMap<String, String>,
    requested: Mutex<BTreeSet<String>>,
    parameters: AtomicUsize,
    problems: Mutex<Vec<Problem>>,
}

/// Shares the checkpoint between the `VarBuilder` and the report.
#[derive(Clone)]
struct Recorder(Arc<Checkpoint>);

impl SimpleBackend for Recorder {
    fn get(
        &self,
        shape: Shape,
        name: &str,
        _init: Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        let ckpt = &self.0;
        // A stand-in so loading goes on to report every problem: one zero broadcast to the
        // shape, never the memory of a shape the checkpoint does not have.
        let placeholder = || Tensor::zeros((), dtype, dev)?.broadcast_as(shape.clone());
        let Some(stored) = ckpt.stored_name.get(name) else {
            ckpt.problem(Problem::Missing(name.to_string()));
            return placeholder();
        };
        ckpt.requested
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(stored.clone());
        let view = ckpt.file.get(stored)?;
        if !is_float(view.dtype()) {
            ckpt.problem(Problem::Dtype {
                tensor: stored.clone(),
                dtype: format!("{:?}", view.dtype()),
            });
            return placeholder();
        }
        if view.shape() != shape.dims() {
            ckpt.problem(Problem::Shape {
                tensor: stored.clone(),
                expected: shape.dims().to_vec(),
                found: view.shape().to_vec(),
            });
            return placeholder();
        }
        if !all_finite(&view) {
            ckpt.problem(Problem::NonFinite(stored.clone()));
            return placeholder();
        }
        ckpt.parameters
            .fetch_add(shape.elem_count(), Ordering::Relaxed);
        read(&view, dtype, dev)
    }

    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        let stored =
            self.0
                .stored_name
                .get(name)
                .ok_or_else(|| candle_core::Error::CannotFindTensor {
                    path: name.to_string(),
                })?;
        read(&self.0.file.get(stored)?, dtype, dev)
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.0.stored_name.contains_key(name)
    }
}

impl Checkpoint {
    fn problem(&self, problem: Problem) {
        self.problems
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(problem);
    }
}

/// A stored tensor as `dtype` on `dev`. f16 → f32 on the CPU converts in parallel with the
/// CPU's F16C instructions: candle converts one element per call on one thread, which was
/// half the load time of the (f16) default model.
fn read(
    view: &safetensors::tensor::TensorView<'_>,
    dtype: DType,
    dev: &Device,
) -> candle_core::Result<Tensor> {
    if !(dev.is_cpu() && dtype == DType::F32 && view.dtype() == safetensors::Dtype::F16) {
        return candle_core::safetensors::Load::load(view, dev)?.to_dtype(dtype);
    }
    let values = f16_bytes_to_f32(view.data());
    Tensor::from_vec(values, view.shape(), dev)
}

/// Little-endian f16 values to f32, in parallel, vectorised where the bytes are 2-aligned.
fn f16_bytes_to_f32(bytes: &[u8]) -> Vec<f32> {
    use half::slice::HalfFloatSliceExt;
    use rayon::prelude::*;
    const TASK_VALUES: usize = 1 << 16;
    let mut values = vec![0f32; bytes.len() / 2];
    values
        .par_chunks_mut(TASK_VALUES)
        .zip(bytes.par_chunks(2 * TASK_VALUES))
        .for_each(
            |(values, bytes)| match bytemuck::try_cast_slice::<u8, half::f16>(bytes) {
                Ok(halves) if cfg!(target_endian = "little") => halves.convert_to_f32_slice(values),
                _ => {
                    for (value, pair) in values.iter_mut().zip(bytes.chunks_exact(2)) {
                        *value = half::f16::from_le_bytes([pair[0], pair[1]]).to_f32();
                    }
                }
            },
        );
    values
}

/// Whether every value of a stored float tensor is finite (no NaN or infinity), read from
/// its bytes, so a broken checkpoint is refused at load rather than predicting `null`.
pub(crate) fn all_finite(view: &safetensors::tensor::TensorView<'_>) -> bool {
    use rayon::prelude::*;
    let bytes = view.data();
    match view.dtype() {
        safetensors::Dtype::F32 => bytes
            .par_chunks_exact(4)
            .all(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]).is_finite()),
        safetensors::Dtype::F64 => bytes
            .par_chunks_exact(8)
            .all(|b| f64::from_le_bytes(b.try_into().expect("8 bytes")).is_finite()),
        // Exponent bits all set means infinity or NaN.
        safetensors::Dtype::F16 => bytes
            .par_chunks_exact(2)
            .all(|b| u16::from_le_bytes([b[0], b[1]]) & 0x7c00 != 0x7c00),
        safetensors::Dtype::BF16 => bytes
            .par_chunks_exact(2)
            .all(|b| u16::from_le_bytes([b[0], b[1]]) & 0x7f80 != 0x7f80),
        _ => true,
    }
}

fn is_float(dtype: safetensors::Dtype) -> bool {
    use safetensors::Dtype::*;
    matches!(dtype, F16 | BF16 | F32 | F64)
}

/// Maps the model's tensor names to the file's: old LayerNorm names (`gamma`/`beta`)
/// become `weight`/`bias`, and a base checkpoint's encoder gets its architecture prefix.
fn name_map(stored: &[String], prefix: &str) -> (HashMap<String, String>, bool) {
    let dotted = format!("{prefix}.");
    let add_prefix = !stored.iter().any(|n| n.starts_with(&dotted));
    let mut map = HashMap::new();
    for name in stored {
        let canonical = names::canonical(name);
        if add_prefix {
            // Encoder tensors of a base checkpoint; head tensors keep their own names.
            map.insert(format!("{dotted}{canonical}"), name.clone());
        }
        map.insert(canonical, name.clone());
    }
    (map, add_prefix)
}

/// `model.safetensors` inside `dir`.
pub fn weights_path(dir: &Path) -> PathBuf {
    dir.join("model.safetensors")
}

/// Opens a safetensors file, turning I/O and format failures into errors naming it.
fn open(path: &Path) -> Result<MmapedSafetensors> {
    if !path.is_file() {
        return Err(Error::MissingFile {
            path: path.to_path_buf(),
            hint: Some(
                "a model folder needs config.json, model.safetensors and tokenizer.json".into(),
            ),
        });
    }
    crate::os::map_safetensors(path).map_err(|e| Error::CorruptWeights {
        path: path.to_path_buf(),
        reason: root_cause(&e),
    })
}

fn root_cause(e: &candle_core::Error) -> String {
    match e {
        candle_core::Error::WithPath { inner, .. } => root_cause(inner),
        candle_core::Error::WithBacktrace { inner, .. } => root_cause(inner),
        other => other.to_string(),
    }
}

/// Builds `config`'s model from the safetensors file at `path`, computing in `dtype` on `device`.
///
/// Fails with [`Error::MissingTensors`] (every missing name listed), [`Error::ShapeMismatch`]
/// or [`Error::CorruptWeights`]; tensors the model does not use are listed in the report.
pub fn load(
    path: &Path,
    config: &ModelConfig,
    dtype: DType,
    device: &Device,
) -> Result<(Model, LoadReport)> {
    let file = open(path)?;
    let stored: Vec<String> = file.tensors().into_iter().map(|(n, _)| n).collect();
    let stored_dtype = most_common_dtype(&file);
    let (stored_name, added_prefix) =
        name_map(&stored, config.encoder.architecture.tensor_prefix());
    let checkpoint = Arc::new(Checkpoint {
        file,
        stored_name,
        requested: Mutex::new(BTreeSet::new()),
        parameters: AtomicUsize::new(0),
        problems: Mutex::new(Vec::new()),
    });
    let vb = VarBuilder::from_backend(
        Box::new(Recorder(checkpoint.clone())),
        dtype,
        device.clone(),
    );
    let model = Model::new(config, vb).map_err(|e| match e {
        candle_core::Error::SafeTensor(_) => Error::CorruptWeights {
            path: path.to_path_buf(),
            reason: root_cause(&e),
        },
        other => Error::Candle(other),
    })?;

    let problems = std::mem::take(
        &mut *checkpoint
            .problems
            .lock()
            .unwrap_or_else(PoisonError::into_inner),
    );
    let mut missing = Vec::new();
    for problem in problems {
        match problem {
            Problem::Missing(name) => missing.push(name),
            Problem::Shape {
                tensor,
                expected,
                found,
            } => {
                return Err(Error::ShapeMismatch {
                    path: path.to_path_buf(),
                    tensor,
                    expected,
                    found,
                });
            }
            Problem::Dtype { tensor, dtype } => {
                return Err(Error::UnsupportedDtype {
                    path: path.to_path_buf(),
                    tensor,
                    dtype,
                });
            }
            Problem::NonFinite(tensor) => {
                return Err(Error::NonFiniteWeights {
                    path: path.to_path_buf(),
                    tensor,
                });
            }
        }
    }
    if !missing.is_empty() {
        return Err(Error::MissingTensors {
            path: path.to_path_buf(),
            names: missing,
        });
    }
    let requested = checkpoint
        .requested
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    let mut unused: Vec<String> = stored
        .into_iter()
        .filter(|n| !requested.contains(n) && !is_buffer(n))
        .collect();
    unused.sort();
    Ok((
        model,
        LoadReport {
            unused,
            added_prefix,
            stored_dtype,
            parameters: checkpoint.parameters.load(Ordering::Relaxed),
        },
    ))
}

fn most_common_dtype(file: &MmapedSafetensors) -> Option<DType> {
    let mut counts: HashMap<DType, usize> = HashMap::new();
    for (_, view) in file.tensors() {
        let dtype = match view.dtype() {
            safetensors::Dtype::F16 => DType::F16,
            safetensors::Dtype::BF16 => DType::BF16,
            safetensors::Dtype::F32 => DType::F32,
            safetensors::Dtype::F64 => DType::F64,
            _ => continue,
        };
        *counts.entry(dtype).or_default() += view.data().len();
    }
    counts.into_iter().max_by_key(|&(_, n)| n).map(|(d, _)| d)
}

/// What [`load_into_varmap`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VarMapReport {
    /// Variables left at their fresh initialisation (new heads), by name.
    pub fresh: Vec<String>,
    /// Checkpoint tensors no variable took, by stored name.
    pub unused: Vec<String>,
}

/// Copies a checkpoint's values into the variables of `varmap` (filled by building a
/// [`Model`] from it), converting dtype as needed.
///
/// Variables for which `may_be_fresh` is true (new heads) keep their initialisation when
/// the checkpoint lacks them; any other absent variable is an [`Error::MissingTensors`].
pub fn load_into_varmap(
    path: &Path,
    config: &ModelConfig,
    varmap: &candle_nn::VarMap,
    may_be_fresh: impl Fn(&str) -> bool,
) -> Result<VarMapReport> {
    let file = open(path)?;
    let stored: Vec<String> = file.tensors().into_iter().map(|(n, _)| n).collect();
    let (stored_name, _) = name_map(&stored, config.encoder.architecture.tensor_prefix());
    let vars = varmap.data().lock().unwrap_or_else(PoisonError::into_inner);
    let mut names: Vec<&String> = vars.keys().collect();
    names.sort();
    let mut report = VarMapReport::default();
    let mut missing = Vec::new();
    let mut used = BTreeSet::new();
    for name in names {
        let var = &vars[name];
        let Some(stored) = stored_name.get(name) else {
            if may_be_fresh(name) {
                report.fresh.push(name.clone());
            } else {
                missing.push(name.clone());
            }
            continue;
        };
        let corrupt = |e: candle_core::Error| Error::CorruptWeights {
            path: path.to_path_buf(),
            reason: root_cause(&e),
        };
        let view = file.get(stored).map_err(corrupt)?;
        if !is_float(view.dtype()) {
            return Err(Error::UnsupportedDtype {
                path: path.to_path_buf(),
                tensor: stored.clone(),
                dtype: format!("{:?}", view.dtype()),
            });
        }
        if view.shape() != var.dims() {
            return Err(Error::ShapeMismatch {
                path: path.to_path_buf(),
                tensor: stored.clone(),
                expected: var.dims().to_vec(),
                found: view.shape().to_vec(),
            });
        }
        if !all_finite(&view) {
            return Err(Error::NonFiniteWeights {
                path: path.to_path_buf(),
                tensor: stored.clone(),
            });
        }
        let value = file
            .load(stored, var.device())
            .map_err(corrupt)?
            .to_dtype(var.dtype())?;
        var.set(&value)?;
        used.insert(stored.clone());
    }
    if !missing.is_empty() {
        return Err(Error::MissingTensors {
            path: path.to_path_buf(),
            names: missing,
        });
    }
    report.unused = stored
        .into_iter()
        .filter(|n| !used.contains(n) && !is_buffer(n))
        .collect();
    report.unused.sort();
    Ok(report)
}

/// The variables of `varmap` in `dtype`, by name.
pub fn varmap_tensors(varmap: &VarMap, dtype: DType) -> Result<HashMap<String, Tensor>> {
    let vars = varmap
        .data()
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    vars.iter()
        .map(|(name, var)| Ok((name.clone(), var.as_tensor().to_dtype(dtype)?)))
        .collect()
}

/// Writes tensors as safetensors, atomically.
pub fn save_tensors(tensors: &HashMap<String, Tensor>, path: &Path) -> Result<()> {
    let corrupt = |e: safetensors::SafeTensorError| Error::CorruptWeights {
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    let bytes = safetensors::serialize(tensors.iter().map(|(k, v)| (k.as_str(), v)), None)
        .map_err(corrupt)?;
    // The check loading does, on the bytes about to be written.
    for (name, view) in safetensors::SafeTensors::deserialize(&bytes)
        .map_err(corrupt)?
        .tensors()
    {
        if !all_finite(&view) {
            return Err(Error::NonFiniteWeights {
                path: path.to_path_buf(),
                tensor: name,
            });
        }
    }
    write_atomic(path, &bytes)
}

/// Writes a complete model folder: `config.json`, `model.safetensors`, `tokenizer.json`.
pub fn save_model(
    dir: &Path,
    config: &ModelConfig,
    varmap: &VarMap,
    dtype: DType,
    tokenizer_json: &Path,
) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let mut raw = config.to_value();
    if let Some(map) = raw.as_object_mut() {
        // transformers reads the stored dtype from here.
        let name = match dtype {
            DType::F16 => "float16",
            DType::BF16 => "bfloat16",
            _ => "float32",
        };
        map.insert("torch_dtype".into(), name.into());
        map.remove("dtype");
    }
    save_tensors(
        &varmap_tensors(varmap, dtype)?,
        &dir.join("model.safetensors"),
    )?;
    let tokenizer = std::fs::read(tokenizer_json).map_err(|e| Error::io(tokenizer_json, e))?;
    write_atomic(&dir.join("tokenizer.json"), &tokenizer)?;
    let text = serde_json::to_string_pretty(&raw).expect("plain JSON serialises");
    write_atomic(&dir.join("config.json"), text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f16_tensors_read_as_candle_converts_them() {
        // Longer than one conversion task and of odd length.
        let count = (1 << 16) + 77;
        let values: Vec<half::f16> = (0..count)
            .map(|i| half::f16::from_f32(((i * 37 % 1001) as f32 - 500.0) * 0.013))
            .collect();
        let halves = Tensor::from_vec(values.clone(), count, &Device::Cpu).unwrap();
        let want: Vec<f32> = halves.to_dtype(DType::F32).unwrap().to_vec1().unwrap();

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.safetensors");
        candle_core::safetensors::save(&HashMap::from([("w", halves)]), &path).unwrap();
        let file = open(&path).unwrap();
        let got = read(&file.get("w").unwrap(), DType::F32, &Device::Cpu).unwrap();
        assert_eq!(got.to_vec1::<f32>().unwrap(), want);

        // The same bytes at an odd address take the element-by-element path.
        let mut bytes = vec![0u8];
        bytes.extend(values.iter().flat_map(|v| v.to_le_bytes()));
        assert_eq!(f16_bytes_to_f32(&bytes[1..]), want);
    }
}
