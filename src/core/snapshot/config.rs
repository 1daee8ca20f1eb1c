//! The configuration section: written from a pool's [`Config`], and read
//! back through the constructor's own validation ([`Config::validate`] and
//! the policy setters, as the binding's constructor calls them), whose
//! errors become [`Error::Snapshot`]. The pool made must read back exactly
//! the ranges, excluded runs, `max_blocks` and `grow_threshold` written.

use crate::core::config::{Config, Netmask, WideShape, WideSpec};
use crate::core::error::Error;
use crate::core::policy::Policy;
use crate::core::snapshot::{ConfigImage, Run};
use crate::core::space::{Family, WideExclusion};

impl ConfigImage {
    /// The configuration of `config`, as a snapshot writes it.
    pub fn of(config: &Config) -> ConfigImage {
        let space = config.space();
        let value = |ip| Family::of(ip).1;
        ConfigImage {
            name: config.name().to_owned(),
            family: config.family(),
            legacy: config
                .legacy()
                .map(|(first, last, prefix)| (value(first), value(last), prefix)),
            ports: config.ports(),
            ranges: space.ranges().to_vec(),
            excluded: space.excluded(),
            initial_blocks: config.initial_blocks(),
            max_blocks: config.max_blocks(),
            subpool_blocks: config.subpool_blocks(),
            grow_threshold: config.grow_threshold(),
            hold_down: config.hold_down() + 0.0,
            order: config.order(),
            seed: config.seed(),
            client_quota: config.client_quota(),
            paired: config.paired(),
            client_block: config.client_block(),
            event_queue: config.event_queue(),
        }
    }

    /// The pool configuration this section describes (step 2 of a restore).
    pub fn validate(&self) -> Result<Config, Error> {
        if self.hold_down == 0.0 && self.hold_down.is_sign_negative() {
            return Err(Error::Snapshot(
                "hold_down is -0.0 (a snapshot writes 0.0)".into(),
            ));
        }
        let config = self
            .configured()
            .map_err(|error| Error::Snapshot(format!("the configuration is invalid: {error}")))?;
        let space = config.space();
        if space.ranges() != self.ranges.as_slice() {
            return Err(Error::Snapshot(
                "the ranges are not normalised (sorted, touching ones merged) or not the legacy range"
                    .into(),
            ));
        }
        if space.excluded() != self.excluded {
            return Err(Error::Snapshot(
                "the exclusions are not normalised (maximal runs within the ranges, ascending)"
                    .into(),
            ));
        }
        if config.max_blocks() != self.max_blocks || config.grow_threshold() != self.grow_threshold
        {
            return Err(Error::Snapshot(
                "max_blocks or grow_threshold is not as a pool keeps it".into(),
            ));
        }
        Ok(config)
    }

    /// The constructor's checks, in its order, on this section's values.
    fn configured(&self) -> Result<Config, Error> {
        let family = self.family;
        let shape = match self.legacy {
            Some((first, last, prefix)) => WideShape::Legacy {
                first: (family, first),
                last: (family, last),
                netmask: Netmask::Prefix(prefix),
            },
            None => WideShape::Ranges(
                self.ranges
                    .iter()
                    .map(|&(first, last)| (family, first, last))
                    .collect(),
            ),
        };
        let config = Config::validate(WideSpec {
            name: self.name.clone(),
            shape,
            exclude: exclude_items(family, self.ports, &self.excluded),
            ports: (i128::from(self.ports.0), i128::from(self.ports.1)),
            initial_blocks: i128::from(self.initial_blocks),
            max_blocks: i128::from(self.max_blocks),
            subpool_blocks: Some(i128::from(self.subpool_blocks)),
            grow_threshold: i128::from(self.grow_threshold),
        })?;
        config.with_policy(Policy {
            hold_down: self.hold_down,
            order: self.order,
            seed: self.seed,
            drawn_seed: None,
            client_quota: self.client_quota,
            paired: self.paired,
            client_block: self.client_block,
            event_queue: self.event_queue,
        })
    }
}

/// The exclusions of `config`'s space as `exclude` items (normalised: what
/// a store registers for a pool restored from a snapshot).
#[cfg_attr(not(feature = "python"), allow(dead_code))] // the binding's store join
pub(crate) fn exclusions(config: &Config) -> Vec<WideExclusion> {
    let space = config.space();
    exclude_items(config.family(), config.ports(), &space.excluded())
}

/// The excluded runs as `exclude` items, each as up to three: its partial
/// first IP, its whole IPs, its partial last IP (the reference model's
/// `_exclude_items`; a run that is not normalised makes items that the
/// constructor refuses or a space that reads back other runs).
fn exclude_items(family: Family, (low, high): (u16, u16), runs: &[Run]) -> Vec<WideExclusion> {
    let ports = |ip, first: u16, last: u16| WideExclusion {
        family,
        first: ip,
        last: ip,
        ports: Some((i128::from(first), i128::from(last))),
    };
    let mut items = Vec::new();
    for &((first_ip, first_port), (last_ip, last_port)) in runs {
        if first_ip == last_ip {
            items.push(ports(first_ip, first_port, last_port));
            continue;
        }
        let whole_first = if first_port != low {
            first_ip.checked_add(1)
        } else {
            Some(first_ip)
        };
        let whole_last = if last_port != high {
            last_ip.checked_sub(1)
        } else {
            Some(last_ip)
        };
        if first_port != low {
            items.push(ports(first_ip, first_port, high));
        }
        if let (Some(first), Some(last)) = (whole_first, whole_last) {
            if first <= last {
                items.push(WideExclusion {
                    family,
                    first,
                    last,
                    ports: None,
                });
            }
        }
        if last_port != high {
            items.push(ports(last_ip, low, last_port));
        }
    }
    items
}
