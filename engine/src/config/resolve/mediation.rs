//! IKE mediation keys (swanctl.conf's `mediation`, `mediated_by`, `mediation_peer`):
//! checked across connections, since `mediated_by` names another one, and turned into
//! `ike::config::Mediation`.

use std::collections::BTreeMap;

use ike::config::{Identity, Mediation};

use super::{ConnectionPlan, Cx};
use crate::config::{ConfigError, ConnectionSection};

/// Sets each connection's mediation role, or says which key is wrong and why.
pub(super) fn resolve(
    cx: &Cx<'_>,
    sections: &BTreeMap<String, ConnectionSection>,
    mut plans: Vec<ConnectionPlan>,
) -> Result<Vec<ConnectionPlan>, ConfigError> {
    for plan in &mut plans {
        let name = plan.conn.name.clone();
        let Some(c) = sections.get(&name) else {
            continue;
        };
        let at = |field: &str| format!("connections.{name}.{field}");
        plan.conn.mediation = match (c.mediation, &c.mediated_by) {
            (true, Some(_)) => {
                return Err(cx.err(
                    &at("mediated_by"),
                    "a mediation connection (mediation = true) cannot itself be mediated",
                ))
            }
            (true, None) => {
                if c.mediation_peer.is_some() {
                    return Err(cx.err(&at("mediation_peer"), "only meaningful with mediated_by"));
                }
                if !c.children.is_empty() {
                    return Err(cx.err(
                        &at("children"),
                        "a mediation connection carries no child SA; put the children on \
                         the connection that names it in mediated_by",
                    ));
                }
                Mediation::Mediation
            }
            (false, Some(by)) => {
                mediated_by(cx, sections, &at("mediated_by"), by)?;
                let peer = match &c.mediation_peer {
                    Some(p) => Some(
                        Identity::parse(p)
                            .map_err(|e| cx.err(&at("mediation_peer"), format!("'{p}': {e}")))?,
                    ),
                    None if plan.conn.remote_id.is_any() => {
                        return Err(cx.err(
                            &at("mediation_peer"),
                            "needed when remote.id is %any: the identity to ask the \
                             mediation server for",
                        ))
                    }
                    None => None,
                };
                Mediation::MediatedBy {
                    by: by.clone(),
                    peer,
                }
            }
            (false, None) => {
                if c.mediation_peer.is_some() {
                    return Err(cx.err(&at("mediation_peer"), "only meaningful with mediated_by"));
                }
                Mediation::Off
            }
        };
    }
    Ok(plans)
}

/// Explains a `mediated_by` that names no mediation connection.
fn mediated_by(
    cx: &Cx<'_>,
    sections: &BTreeMap<String, ConnectionSection>,
    key: &str,
    by: &str,
) -> Result<(), ConfigError> {
    match sections.get(by) {
        None => {
            let known: Vec<&str> = sections
                .iter()
                .filter(|(_, c)| c.mediation)
                .map(|(n, _)| n.as_str())
                .collect();
            let hint = if known.is_empty() {
                "this file defines none; add a connection to the mediation server with \
                 mediation = true"
                    .to_string()
            } else {
                format!("mediation connections here: {}", known.join(", "))
            };
            Err(cx.err(
                key,
                format!(
                    "'{by}' is no connection in this file: mediated_by names the \
                     connection to the mediation server (one with mediation = true) to set \
                     this one up through; {hint}"
                ),
            ))
        }
        Some(c) if !c.mediation => Err(cx.err(
            key,
            format!(
                "connection '{by}' is not a mediation connection: set mediation = true on \
                 it, or name one that has it"
            ),
        )),
        Some(c) if c.remote_addrs.is_empty() => Err(cx.err(
            key,
            format!(
                "connection '{by}' has no remote_addrs: a peer needs the mediation \
                 server's address to register there"
            ),
        )),
        Some(_) => Ok(()),
    }
}
