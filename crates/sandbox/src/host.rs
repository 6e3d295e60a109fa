//! Host side of the Cordon interfaces in `wit/step.wit`: `secrets` and
//! `report`.
//!
//! A secret handle given to the guest is an index into the step's own table
//! of *granted* secrets; the value never crosses into the guest. Every call
//! (allowed, denied, or for a name that is not granted) is counted for the
//! record.

use cordon_manifest::manifest::SecretUse;
use cordon_secrets::ResolvedSecret;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::collections::BTreeMap;
use wasmtime::component::{HasData, Resource, ResourceTable};

pub(crate) mod bindings {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "cordon:step/host-api",
        with: {
            "cordon:step/secrets.secret": super::SecretHandle,
        },
        imports: { default: trappable },
    });
}

use bindings::cordon::step::{report, secrets};

/// Most metrics plus annotations a step may add. A step is untrusted code:
/// without a bound it could grow the runner's memory (and the record) at
/// will. Facts beyond the bound are counted in `dropped`.
pub const MAX_FACTS: usize = 1024;
/// Longest metric name or annotation key kept, in bytes.
pub const MAX_KEY: usize = 128;
/// Longest annotation value kept, in bytes.
pub const MAX_VALUE: usize = 4096;

/// The guest's handle to a granted secret: an index into [`CordonHost::secrets`].
pub struct SecretHandle {
    index: usize,
}

pub use cordon_record::run::{Report, SecretAudit};

/// Per-run state behind the Cordon interfaces.
#[derive(Default)]
pub struct CordonHost {
    pub(crate) secrets: Vec<ResolvedSecret>,
    pub(crate) audit: BTreeMap<String, SecretAudit>,
    /// Names the step asked for that the manifest does not grant.
    pub(crate) not_granted: BTreeMap<String, u64>,
    /// Redacts guest-chosen names as they arrive, before any bound cuts
    /// them: a cut first would leave most of a value behind.
    pub(crate) redactor: cordon_secrets::Redactor,
    pub(crate) report: Report,
    /// Placeholders of the secrets the step may send as HTTP headers.
    pub(crate) placeholders: BTreeMap<String, String>,
}

impl CordonHost {
    /// State for a run granted `secrets`.
    pub fn new(secrets: Vec<ResolvedSecret>) -> Self {
        let audit = secrets
            .iter()
            .map(|s| {
                (
                    s.name.clone(),
                    SecretAudit {
                        provider: s.provider.to_string(),
                        version: s.version.clone(),
                        token_accessor: s.credential.clone(),
                        granted_uses: s.uses.iter().copied().collect(),
                        ..Default::default()
                    },
                )
            })
            .collect();
        CordonHost {
            redactor: cordon_secrets::Redactor::new(&secrets),
            secrets,
            audit,
            ..Default::default()
        }
    }

    fn fact_room(&mut self, key: &str) -> bool {
        let facts = self.report.metrics.len() + self.report.annotations.len();
        let known =
            self.report.metrics.contains_key(key) || self.report.annotations.contains_key(key);
        if key.len() > MAX_KEY || (!known && facts >= MAX_FACTS) {
            self.report.dropped += 1;
            return false;
        }
        true
    }
}

/// The view the generated bindings get: the resource table plus our state.
pub struct CordonView<'a> {
    pub(crate) table: &'a mut ResourceTable,
    pub(crate) host: &'a mut CordonHost,
}

/// `HasData` marker for [`CordonView`].
pub struct CordonData;

impl HasData for CordonData {
    type Data<'a> = CordonView<'a>;
}

fn use_name(u: SecretUse) -> &'static str {
    match u {
        SecretUse::Hmac => "hmac",
        SecretUse::Sign => "sign",
        SecretUse::HttpHeader => "http-header",
        SecretUse::Reveal => "reveal",
    }
}

impl CordonView<'_> {
    /// Checks that the handle's secret grants `u`, counting the attempt.
    fn authorize(
        &mut self,
        handle: &Resource<SecretHandle>,
        u: SecretUse,
    ) -> wasmtime::Result<Result<usize, secrets::Error>> {
        let index = self.table.get(handle)?.index;
        let secret = &self.host.secrets[index];
        let audit = self
            .host
            .audit
            .get_mut(&secret.name)
            .expect("audit entry for every granted secret");
        if secret.uses.contains(&u) {
            *audit.used.entry(use_name(u).into()).or_default() += 1;
            Ok(Ok(index))
        } else {
            *audit.denied.entry(use_name(u).into()).or_default() += 1;
            Ok(Err(secrets::Error::Denied))
        }
    }
}

impl secrets::Host for CordonView<'_> {
    fn get(
        &mut self,
        name: String,
    ) -> wasmtime::Result<Result<Resource<SecretHandle>, secrets::Error>> {
        match self.host.secrets.iter().position(|s| s.name == name) {
            Some(index) => {
                if let Some(a) = self.host.audit.get_mut(&name) {
                    a.opened += 1;
                }
                Ok(Ok(self.table.push(SecretHandle { index })?))
            }
            None => {
                // Bound the map: a step looping over random names must not
                // grow the record without limit.
                let n = self.host.not_granted.len();
                if n < MAX_FACTS {
                    // Redacted as a value first, then cut: the name may
                    // spell a granted value.
                    let key: String = self
                        .host
                        .redactor
                        .redact_str(&name)
                        .chars()
                        .take(MAX_KEY)
                        .collect();
                    *self.host.not_granted.entry(key).or_default() += 1;
                }
                Ok(Err(secrets::Error::NotGranted))
            }
        }
    }
}

impl secrets::HostSecret for CordonView<'_> {
    fn name(&mut self, handle: Resource<SecretHandle>) -> wasmtime::Result<String> {
        let index = self.table.get(&handle)?.index;
        Ok(self.host.secrets[index].name.clone())
    }

    fn hmac_sha256(
        &mut self,
        handle: Resource<SecretHandle>,
        data: Vec<u8>,
    ) -> wasmtime::Result<Result<Vec<u8>, secrets::Error>> {
        let index = match self.authorize(&handle, SecretUse::Hmac)? {
            Ok(i) => i,
            Err(e) => return Ok(Err(e)),
        };
        let tag = self.host.secrets[index].value.with_bytes(|key| {
            let mut mac =
                Hmac::<Sha256>::new_from_slice(key).expect("HMAC accepts keys of any length");
            mac.update(&data);
            mac.finalize().into_bytes().to_vec()
        });
        Ok(Ok(tag))
    }

    fn sign_ed25519(
        &mut self,
        handle: Resource<SecretHandle>,
        data: Vec<u8>,
    ) -> wasmtime::Result<Result<Vec<u8>, secrets::Error>> {
        let index = match self.authorize(&handle, SecretUse::Sign)? {
            Ok(i) => i,
            Err(e) => return Ok(Err(e)),
        };
        Ok(self.host.secrets[index]
            .value
            .ed25519_key()
            .map(|key| {
                use ed25519_dalek::Signer;
                key.sign(&data).to_bytes().to_vec()
            })
            .map_err(|e| secrets::Error::Unavailable(e.0)))
    }

    fn public_key_ed25519(
        &mut self,
        handle: Resource<SecretHandle>,
    ) -> wasmtime::Result<Result<Vec<u8>, secrets::Error>> {
        let index = match self.authorize(&handle, SecretUse::Sign)? {
            Ok(i) => i,
            Err(e) => return Ok(Err(e)),
        };
        Ok(self.host.secrets[index]
            .value
            .ed25519_key()
            .map(|key| key.verifying_key().to_bytes().to_vec())
            .map_err(|e| secrets::Error::Unavailable(e.0)))
    }

    fn reveal(
        &mut self,
        handle: Resource<SecretHandle>,
    ) -> wasmtime::Result<Result<Vec<u8>, secrets::Error>> {
        let index = match self.authorize(&handle, SecretUse::Reveal)? {
            Ok(i) => i,
            Err(e) => return Ok(Err(e)),
        };
        // The one place a value crosses into the guest, and only under an
        // explicit `reveal` grant. The redactor still scrubs it from the
        // step's streams and the leak check still refuses it in outputs.
        Ok(Ok(self.host.secrets[index]
            .value
            .with_bytes(<[u8]>::to_vec)))
    }

    fn http_header_placeholder(
        &mut self,
        handle: Resource<SecretHandle>,
    ) -> wasmtime::Result<Result<String, secrets::Error>> {
        let index = match self.authorize(&handle, SecretUse::HttpHeader)? {
            Ok(i) => i,
            Err(e) => return Ok(Err(e)),
        };
        let name = &self.host.secrets[index].name;
        // Without a network grant there is nothing to substitute into: the
        // manifest refuses `http-header` without `[network]`, so this is
        // only reachable through a re-execution, which has no network.
        Ok(self
            .host
            .placeholders
            .get(name)
            .cloned()
            .ok_or(secrets::Error::Denied))
    }

    fn drop(&mut self, handle: Resource<SecretHandle>) -> wasmtime::Result<()> {
        self.table.delete(handle)?;
        Ok(())
    }
}

impl report::Host for CordonView<'_> {
    fn metric(&mut self, name: String, value: f64) -> wasmtime::Result<()> {
        // A value that is not a finite number (a diverging training run's
        // NaN, an overflow's inf) is refused here, before it reaches the
        // record: JSON cannot spell it, and every reader and renderer of
        // the record would have to guess. The WIT's `metric` returns
        // nothing, and giving it a result would change the type every
        // built step imports (they would fail to link), so the refusal is
        // counted in the record (`report.non_finite`) and the value
        // dropped; the step goes on as it would after any other metric.
        if !value.is_finite() {
            self.host.report.non_finite += 1;
            return Ok(());
        }
        if self.host.fact_room(&name) {
            let name = self.host.redactor.redact_str(&name);
            self.host.report.metrics.insert(name, value);
        }
        Ok(())
    }

    fn annotate(&mut self, key: String, value: String) -> wasmtime::Result<()> {
        if value.len() > MAX_VALUE {
            self.host.report.dropped += 1;
            return Ok(());
        }
        if self.host.fact_room(&key) {
            let r = &self.host.redactor;
            let (key, value) = (r.redact_str(&key), r.redact_str(&value));
            self.host.report.annotations.insert(key, value);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report_of(calls: &[(&str, f64)]) -> Report {
        let mut table = ResourceTable::new();
        let mut host = CordonHost::new(Vec::new());
        let mut view = CordonView {
            table: &mut table,
            host: &mut host,
        };
        for (name, value) in calls {
            report::Host::metric(&mut view, (*name).into(), *value).unwrap();
        }
        host.report
    }

    #[test]
    fn a_step_reporting_nan_or_infinity_leaves_no_such_metric_and_the_refusal_counted() {
        let r = report_of(&[
            ("loss", f64::NAN),
            ("gain", f64::INFINITY),
            ("debt", f64::NEG_INFINITY),
            ("rows", 3.0),
        ]);
        assert_eq!(r.metrics, BTreeMap::from([("rows".to_string(), 3.0)]));
        assert_eq!(r.non_finite, 3);
        assert_eq!(r.dropped, 0);
    }

    #[test]
    fn a_nan_does_not_replace_an_earlier_finite_value() {
        let r = report_of(&[("loss", 0.5), ("loss", f64::NAN)]);
        assert_eq!(r.metrics["loss"], 0.5);
        assert_eq!(r.non_finite, 1);
    }
}
