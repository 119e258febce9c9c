//! Ed25519 signing for the drain's checkpoints, with the GIL held.
//!
//! cryptography's `Ed25519PrivateKey.sign` releases the GIL; a drain thread competing with busy app threads
//! then waits a whole switch interval (5 ms) to get it back, for each chain it checkpoints (16 chains: 80 ms
//! a round). A signature takes ~50 us: holding the GIL for it costs the app far less. Ed25519 is
//! deterministic (RFC 8032), so the signatures are the ones cryptography makes (the tests hold them equal).
use ed25519_dalek::{Signer, SigningKey};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

/// An Ed25519 private key (its 32-byte seed; zeroized when dropped).
#[pyclass(frozen, module = "auditrail_native")]
pub struct Ed25519Signer {
    key: SigningKey,
}

#[pymethods]
impl Ed25519Signer {
    #[new]
    fn new(seed: &[u8]) -> PyResult<Self> {
        let seed: &[u8; 32] = seed.try_into().map_err(|_| PyValueError::new_err("an Ed25519 seed is 32 bytes"))?;
        Ok(Ed25519Signer { key: SigningKey::from_bytes(seed) })
    }

    /// The 64-byte signature of `data`.
    fn sign<'py>(&self, py: Python<'py>, data: &[u8]) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.key.sign(data).to_bytes())
    }

    /// The 32-byte public key.
    fn public_key<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, self.key.verifying_key().as_bytes())
    }

    fn __repr__(&self) -> &'static str {
        "Ed25519Signer(<private>)"
    }
}
