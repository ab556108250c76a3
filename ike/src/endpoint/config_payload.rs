//! The configuration payload in IKE_AUTH (RFC 7296 2.19, 3.15): the initiator's
//! CFG_REQUEST for virtual IPs, the responder's CFG_REPLY from its pools, and the
//! traffic selectors narrowed to the addresses so assigned. Behaves as charon does:
//! INTERNAL_ADDRESS_FAILURE when no requested address could be assigned,
//! FAILED_CP_REQUIRED when a connection with pools got no request; either way no child
//! SA is created in that IKE_AUTH.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::event::Event;
use super::ike_sa::IkeSa;
use super::payloads::find_notify;
use super::Ctx;
use crate::config::Connection;
use crate::iana::{cfg, notify, NotifyType};
use crate::ts;
use crate::wire::{Configuration, Payload, TrafficSelector};

/// The prefix length sent with an INTERNAL_IP6_ADDRESS (RFC 7296 3.15.1), as charon.
const IP6_PREFIX: u8 = 64;

/// The responder's answer to the peer's configuration payload.
pub(crate) enum CpAnswer {
    /// Nothing to answer: no request, no pools.
    None,
    /// A CFG_REPLY with the assigned addresses and attributes.
    Reply(Payload),
    /// No child SA: answer with this notify (INTERNAL_ADDRESS_FAILURE,
    /// FAILED_CP_REQUIRED).
    Refuse(NotifyType),
}

fn address_attribute(a: IpAddr) -> (u16, Vec<u8>) {
    match a {
        IpAddr::V4(v4) if v4.is_unspecified() => (cfg::INTERNAL_IP4_ADDRESS, Vec::new()),
        IpAddr::V4(v4) => (cfg::INTERNAL_IP4_ADDRESS, v4.octets().to_vec()),
        IpAddr::V6(v6) if v6.is_unspecified() => (cfg::INTERNAL_IP6_ADDRESS, Vec::new()),
        IpAddr::V6(v6) => {
            let mut v = v6.octets().to_vec();
            v.push(IP6_PREFIX);
            (cfg::INTERNAL_IP6_ADDRESS, v)
        }
    }
}

/// An address attribute's value: empty asks for any address of the family; an IPv6
/// one carries a prefix length after the address.
fn parse_address(kind: u16, v: &[u8]) -> Option<IpAddr> {
    match kind {
        cfg::INTERNAL_IP4_ADDRESS | cfg::INTERNAL_IP4_DNS => match v.len() {
            0 if kind == cfg::INTERNAL_IP4_ADDRESS => Some(Ipv4Addr::UNSPECIFIED.into()),
            4 => Some(IpAddr::from(<[u8; 4]>::try_from(v).ok()?)),
            _ => None,
        },
        cfg::INTERNAL_IP6_ADDRESS | cfg::INTERNAL_IP6_DNS => match v.len() {
            0 if kind == cfg::INTERNAL_IP6_ADDRESS => Some(Ipv6Addr::UNSPECIFIED.into()),
            16 | 17 => Some(IpAddr::from(<[u8; 16]>::try_from(&v[..16]).ok()?)),
            _ => None,
        },
        _ => None,
    }
}

fn cp_of(payloads: &[Payload], cfg_type: u8) -> Option<&Configuration> {
    payloads.iter().find_map(|p| match p {
        Payload::Cp(c) if c.cfg_type == cfg_type => Some(c),
        _ => None,
    })
}

fn addresses(c: &Configuration, kinds: [u16; 2]) -> Vec<IpAddr> {
    kinds
        .iter()
        .flat_map(|k| c.values(*k).filter_map(|v| parse_address(*k, v)))
        .collect()
}

/// Host selectors for `vips`, any protocol and port.
pub(crate) fn host_selectors(vips: &[IpAddr]) -> Vec<TrafficSelector> {
    vips.iter()
        .filter_map(|a| ts::from_prefix(*a, if a.is_ipv4() { 32 } else { 128 }))
        .collect()
}

/// `sel` narrowed to `vips` (RFC 7296 2.9); unchanged when there are no virtual IPs.
pub(crate) fn narrow_to(sel: Vec<TrafficSelector>, vips: &[IpAddr]) -> Vec<TrafficSelector> {
    if vips.is_empty() {
        sel
    } else {
        ts::narrow(&sel, &host_selectors(vips))
    }
}

impl IkeSa {
    /// Initiator: the CFG_REQUEST for `conn`'s virtual IPs, with the DNS attributes of
    /// their families, or `None` when it asks for none.
    pub(crate) fn cfg_request(conn: &Connection) -> Option<Payload> {
        if conn.vips.is_empty() {
            return None;
        }
        let mut attributes: Vec<(u16, Vec<u8>)> =
            conn.vips.iter().map(|a| address_attribute(*a)).collect();
        if conn.vips.iter().any(|a| a.is_ipv4()) {
            attributes.push((cfg::INTERNAL_IP4_DNS, Vec::new()));
        }
        if conn.vips.iter().any(|a| a.is_ipv6()) {
            attributes.push((cfg::INTERNAL_IP6_DNS, Vec::new()));
        }
        Some(Payload::Cp(Configuration {
            cfg_type: cfg::REQUEST,
            attributes,
        }))
    }

    /// Initiator: takes the addresses and DNS servers of the peer's CFG_REPLY.
    pub(crate) fn take_cfg_reply(&mut self, payloads: &[Payload]) {
        let Some(c) = cp_of(payloads, cfg::REPLY) else {
            return;
        };
        self.own_vips = addresses(c, [cfg::INTERNAL_IP4_ADDRESS, cfg::INTERNAL_IP6_ADDRESS])
            .into_iter()
            .filter(|a| !a.is_unspecified())
            .collect();
        self.dns = addresses(c, [cfg::INTERNAL_IP4_DNS, cfg::INTERNAL_IP6_DNS]);
    }

    /// Responder: answers the peer's CFG_REQUEST from `conn`'s pools, leasing the
    /// addresses to the peer's identity (set before this is called).
    pub(crate) fn answer_cfg_request(
        &mut self,
        ctx: &mut Ctx<'_>,
        conn: &Connection,
        payloads: &[Payload],
    ) -> CpAnswer {
        let mut requested = cp_of(payloads, cfg::REQUEST)
            .map(|c| addresses(c, [cfg::INTERNAL_IP4_ADDRESS, cfg::INTERNAL_IP6_ADDRESS]))
            .unwrap_or_default();
        // One address per family: a peer listing the attribute many times must not
        // drain a pool with one request.
        let mut seen = (false, false);
        requested.retain(|a| {
            let slot = if a.is_ipv4() {
                &mut seen.0
            } else {
                &mut seen.1
            };
            !std::mem::replace(slot, true)
        });
        if requested.is_empty() {
            return if conn.pools.is_empty() {
                CpAnswer::None
            } else {
                CpAnswer::Refuse(notify::FAILED_CP_REQUIRED)
            };
        }
        let Some(identity) = self.remote_id.clone() else {
            return CpAnswer::Refuse(notify::INTERNAL_ADDRESS_FAILURE);
        };
        // RFC 7296 2.4: a peer that sent INITIAL_CONTACT lost its state, so an address
        // its identity still holds from the same place is its own to take back.
        let reclaim = find_notify(payloads, notify::INITIAL_CONTACT).is_some();
        let mut attributes = Vec::new();
        let mut dns: Vec<IpAddr> = Vec::new();
        for want in &requested {
            let found = conn.pools.iter().find_map(|name| {
                let pool = ctx.pools.get_mut(name)?;
                let a = pool.acquire(&identity, *want, self.id, self.remote.ip(), reclaim)?;
                Some((a, pool.dns().to_vec()))
            });
            if let Some((a, d)) = found {
                if !self.peer_vips.contains(&a) {
                    self.peer_vips.push(a);
                    attributes.push(address_attribute(a));
                }
                for x in d {
                    if !dns.contains(&x) {
                        dns.push(x);
                    }
                }
            }
        }
        if self.peer_vips.is_empty() {
            ctx.events.push_back(Event::NoVirtualIp {
                ike: self.id,
                conn: conn.name.clone(),
                remote_id: identity.to_string(),
                requested,
                pools: conn.pools.clone(),
            });
            return CpAnswer::Refuse(notify::INTERNAL_ADDRESS_FAILURE);
        }
        for d in dns {
            let kind = if d.is_ipv4() {
                cfg::INTERNAL_IP4_DNS
            } else {
                cfg::INTERNAL_IP6_DNS
            };
            let value = match d {
                IpAddr::V4(a) => a.octets().to_vec(),
                IpAddr::V6(a) => a.octets().to_vec(),
            };
            attributes.push((kind, value));
        }
        CpAnswer::Reply(Payload::Cp(Configuration {
            cfg_type: cfg::REPLY,
            attributes,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_round_trip() {
        let any4: IpAddr = Ipv4Addr::UNSPECIFIED.into();
        let v6: IpAddr = "fd00::5".parse().unwrap();
        let (k, v) = address_attribute(any4);
        assert_eq!((k, v.len()), (cfg::INTERNAL_IP4_ADDRESS, 0));
        assert_eq!(parse_address(k, &v), Some(any4));
        let (k, v) = address_attribute(v6);
        assert_eq!((k, v.len(), v[16]), (cfg::INTERNAL_IP6_ADDRESS, 17, 64));
        assert_eq!(parse_address(k, &v), Some(v6));
        assert_eq!(parse_address(cfg::INTERNAL_IP4_DNS, &[]), None);
        assert_eq!(parse_address(cfg::INTERNAL_IP4_ADDRESS, &[1, 2, 3]), None);
        assert_eq!(
            parse_address(cfg::INTERNAL_IP6_DNS, &[0; 16]),
            Some(Ipv6Addr::UNSPECIFIED.into())
        );
    }
}
