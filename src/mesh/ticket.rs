//! Redirect tickets: a node that sends a client elsewhere gives it a ticket the target
//! can check without asking anyone: HMAC-SHA256 under the mesh secret over the client id, the
//! target and an expiry. The target admits the ticket's holder (it does not redirect it
//! again, which would loop) under the same client id, once.

use std::collections::HashMap;

use bytes::{BufMut, Bytes, BytesMut};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use super::MeshSecret;
use crate::proto::{ClientId, NodeId};

/// Body: client id (8) ‖ target (16) ‖ expiry ms (8); then the MAC (32).
const BODY: usize = 8 + 16 + 8;
const LEN: usize = BODY + 32;

/// Why a ticket was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TicketError {
    /// Not a ticket of this mesh (wrong length or MAC).
    #[error("the redirect ticket is not valid for this mesh")]
    Invalid,
    /// Issued for another node.
    #[error("the redirect ticket names another node")]
    WrongNode,
    /// Too old.
    #[error("the redirect ticket has expired")]
    Expired,
    /// Already used once.
    #[error("the redirect ticket was already used")]
    Used,
}

fn mac(secret: &[u8], body: &[u8]) -> [u8; 32] {
    mac_in(b"cloudmesh-redirect-ticket", secret, body)
}

/// HMAC-SHA256 of `body` under `secret`, in the domain `domain` (so a redirect ticket is
/// never taken for a resume token, nor the other way round).
fn mac_in(domain: &[u8], secret: &[u8], body: &[u8]) -> [u8; 32] {
    // HMAC accepts keys of any length; this cannot fail.
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(secret).unwrap_or_else(|_| unreachable!());
    m.update(domain);
    m.update(body);
    m.finalize().into_bytes().into()
}

const RESUME_DOMAIN: &[u8] = b"cloudmesh-resume-token";

/// What a resume token names: the session's client, the node that issued it (where the
/// session lives while the token is current), and the issue number the session must still
/// carry (a newer token replaces it, so each is honoured once).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResumeClaim {
    /// The session's client id.
    pub client: ClientId,
    /// The node holding the session.
    pub node: NodeId,
    /// The token's issue number in that session.
    pub nonce: u64,
}

/// A resume token for `claim`, like a redirect ticket: HMAC-SHA256 under the mesh secret
/// over client id (8) ‖ node (16) ‖ nonce (8). It does not expire by itself: the session it
/// names does (the node's resume grace), and each token is replaced by the next.
pub fn issue_resume(secret: &MeshSecret, claim: ResumeClaim) -> Bytes {
    let mut b = BytesMut::with_capacity(LEN);
    b.put_u64(claim.client.0);
    b.put_u128(claim.node.0);
    b.put_u64(claim.nonce);
    let tag = mac_in(RESUME_DOMAIN, secret.bytes(), &b);
    b.put_slice(&tag);
    b.freeze()
}

/// Checks a resume token's MAC under any secret the mesh accepts and reads its claim.
/// Whether the session still carries that nonce is the holding node's check.
pub fn check_resume(secret: &MeshSecret, token: &[u8]) -> Result<ResumeClaim, TicketError> {
    if token.len() != LEN {
        return Err(TicketError::Invalid);
    }
    let (body, tag) = token.split_at(BODY);
    let valid = secret.candidates().fold(false, |ok, s| {
        ok | bool::from(mac_in(RESUME_DOMAIN, s, body).ct_eq(tag))
    });
    if !valid {
        return Err(TicketError::Invalid);
    }
    let mut client = [0u8; 8];
    let mut node = [0u8; 16];
    let mut nonce = [0u8; 8];
    client.copy_from_slice(&body[0..8]);
    node.copy_from_slice(&body[8..24]);
    nonce.copy_from_slice(&body[24..32]);
    Ok(ResumeClaim {
        client: ClientId(u64::from_be_bytes(client)),
        node: NodeId(u128::from_be_bytes(node)),
        nonce: u64::from_be_bytes(nonce),
    })
}

/// A ticket for `client` to be admitted by `target` until `expires_ms` (Unix ms).
pub fn issue(secret: &MeshSecret, client: ClientId, target: NodeId, expires_ms: u64) -> Bytes {
    let mut b = BytesMut::with_capacity(LEN);
    b.put_u64(client.0);
    b.put_u128(target.0);
    b.put_u64(expires_ms);
    let tag = mac(secret.bytes(), &b);
    b.put_slice(&tag);
    b.freeze()
}

/// Tickets a node has accepted, so each is used once. Entries are dropped after expiry.
#[derive(Debug, Default)]
pub struct TicketBook {
    used: HashMap<[u8; 32], u64>,
}

impl TicketBook {
    /// Checks a ticket presented to node `me` at `now_ms`; returns the client id it carries.
    pub fn redeem(
        &mut self,
        secret: &MeshSecret,
        ticket: &[u8],
        me: NodeId,
        now_ms: u64,
    ) -> Result<ClientId, TicketError> {
        if ticket.len() != LEN {
            return Err(TicketError::Invalid);
        }
        let (body, tag) = ticket.split_at(BODY);
        // Issued under any secret the mesh accepts (one node may already prove with a new
        // secret while this one still proves with the old).
        let valid = secret
            .candidates()
            .fold(false, |ok, s| ok | bool::from(mac(s, body).ct_eq(tag)));
        if !valid {
            return Err(TicketError::Invalid);
        }
        let field = |r: std::ops::Range<usize>| body.get(r).ok_or(TicketError::Invalid);
        let client = u64::from_be_bytes(field(0..8)?.try_into().map_err(|_| TicketError::Invalid)?);
        let target =
            u128::from_be_bytes(field(8..24)?.try_into().map_err(|_| TicketError::Invalid)?);
        let expires = u64::from_be_bytes(
            field(24..32)?
                .try_into()
                .map_err(|_| TicketError::Invalid)?,
        );
        if target != me.0 {
            return Err(TicketError::WrongNode);
        }
        if now_ms > expires {
            return Err(TicketError::Expired);
        }
        self.used.retain(|_, exp| *exp >= now_ms);
        let key: [u8; 32] = tag.try_into().map_err(|_| TicketError::Invalid)?;
        if self.used.insert(key, expires).is_some() {
            return Err(TicketError::Used);
        }
        Ok(ClientId(client))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ticket_admits_once_at_its_node_before_expiry() {
        let s = MeshSecret::new(vec![7; 32]).expect("secret");
        let other = MeshSecret::new(vec![8; 32]).expect("secret");
        let t = issue(&s, ClientId(42), NodeId(9), 1000);
        let mut book = TicketBook::default();
        assert_eq!(
            book.redeem(&other, &t, NodeId(9), 10),
            Err(TicketError::Invalid)
        );
        assert_eq!(
            book.redeem(&s, &t, NodeId(8), 10),
            Err(TicketError::WrongNode)
        );
        assert_eq!(
            book.redeem(&s, &t, NodeId(9), 1001),
            Err(TicketError::Expired)
        );
        assert_eq!(book.redeem(&s, &t, NodeId(9), 10), Ok(ClientId(42)));
        assert_eq!(book.redeem(&s, &t, NodeId(9), 11), Err(TicketError::Used));
        let mut forged = t.to_vec();
        forged[0] ^= 1;
        assert_eq!(
            book.redeem(&s, &forged, NodeId(9), 10),
            Err(TicketError::Invalid)
        );
        assert_eq!(
            book.redeem(&s, &t[..10], NodeId(9), 10),
            Err(TicketError::Invalid)
        );
    }

    #[test]
    fn a_resume_token_reads_back_under_the_mesh_secret_only() {
        let s = MeshSecret::new(vec![7; 32]).expect("secret");
        let other = MeshSecret::new(vec![8; 32]).expect("secret");
        let claim = ResumeClaim {
            client: ClientId(42),
            node: NodeId(9),
            nonce: 3,
        };
        let t = issue_resume(&s, claim);
        assert_eq!(check_resume(&s, &t), Ok(claim));
        assert_eq!(check_resume(&other, &t), Err(TicketError::Invalid));
        let mut forged = t.to_vec();
        forged[31] ^= 1;
        assert_eq!(check_resume(&s, &forged), Err(TicketError::Invalid));
        assert_eq!(check_resume(&s, &t[..40]), Err(TicketError::Invalid));
        // Not interchangeable with a redirect ticket for the same fields.
        let ticket = issue(&s, ClientId(42), NodeId(9), 3);
        assert_eq!(check_resume(&s, &ticket), Err(TicketError::Invalid));
    }
}
