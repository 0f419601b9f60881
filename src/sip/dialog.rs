//! The UAS side of one dialog (RFC 3261 §12): its identifiers, route set and our CSeq, and
//! how to build requests inside it (§12.2.1.1). Pure data: no I/O, no clock.

use super::message::InviteInfo;
use super::rsip::headers::{Header, Headers, make_header};
use super::{Method, PRODUCT, Request};

/// Where an in-dialog request should go first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NextHop {
    /// The first entry of the route set (loose routing, RFC 3261 §16.12.1.1).
    Route(String),
    /// No route set: the remote target (the caller's Contact).
    RemoteTarget(String),
}

#[derive(Debug, Clone)]
pub struct UasDialog {
    pub call_id: String,
    pub local_tag: String,
    /// Our `From` in requests we send: their `To` plus our tag.
    local_uri: String,
    /// Our `To` in requests we send: their `From`, tag included.
    remote_uri: String,
    remote_target: String,
    route_set: Vec<String>,
    local_cseq: u32,
    /// Highest CSeq seen from the peer (§12.2.2: lower ones are out of order → 500).
    pub remote_cseq: u32,
}

impl UasDialog {
    /// Builds the dialog from the INVITE (§12.1.1). `initial_local_cseq` should be random-ish;
    /// our first request uses it.
    pub fn new(invite: &InviteInfo, local_tag: String, initial_local_cseq: u32) -> UasDialog {
        UasDialog {
            call_id: invite.call_id.clone(),
            local_uri: format!("{};tag={local_tag}", invite.to),
            local_tag,
            remote_uri: invite.from.clone(),
            remote_target: invite.remote_target.clone(),
            route_set: invite.route_set.clone(),
            local_cseq: initial_local_cseq.max(1),
            remote_cseq: invite.cseq,
        }
    }

    /// A target refresh (re-INVITE with a new Contact, §12.2.2) moves the remote target.
    pub fn refresh_target(&mut self, contact_uri: String) {
        self.remote_target = contact_uri;
    }

    /// §12.2.2: a request whose CSeq is lower than the last one is out of order.
    pub fn accept_remote_cseq(&mut self, cseq: u32) -> bool {
        if cseq < self.remote_cseq {
            return false;
        }
        self.remote_cseq = cseq;
        true
    }

    pub fn next_hop(&self) -> NextHop {
        match self.route_set.first() {
            Some(r) => NextHop::Route(strip_angle(r).to_string()),
            None => NextHop::RemoteTarget(self.remote_target.clone()),
        }
    }

    /// Builds an in-dialog request without `Via` (the transport adds it, with a fresh branch).
    /// Returns `None` only if the remote target is not a parseable URI.
    pub fn request(&mut self, method: Method) -> Option<Request> {
        let uri = super::rsip::Uri::try_from(self.remote_target.as_str()).ok()?;
        self.local_cseq = self.local_cseq.wrapping_add(1).max(1);
        let mut headers: Vec<Header> = Vec::with_capacity(10);
        // §12.2.1.1: with a loose-routing route set, Route carries it in order and the
        // Request-URI is the remote target.
        for r in &self.route_set {
            headers.push(make_header("Route", r.clone()));
        }
        headers.push(make_header("From", self.local_uri.clone()));
        headers.push(make_header("To", self.remote_uri.clone()));
        headers.push(make_header("Call-ID", self.call_id.clone()));
        headers.push(make_header("CSeq", format!("{} {method}", self.local_cseq)));
        headers.push(make_header("Max-Forwards", "70".to_string()));
        headers.push(make_header("User-Agent", PRODUCT.to_string()));
        headers.push(make_header("Content-Length", "0".to_string()));
        Some(Request {
            method,
            uri,
            version: super::rsip::Version::V2,
            headers: Headers::from(headers),
            body: Vec::new(),
        })
    }
}

fn strip_angle(s: &str) -> &str {
    let s = s.trim();
    match (s.find('<'), s.find('>')) {
        (Some(a), Some(b)) if a < b => &s[a + 1..b],
        _ => s.split(';').next().unwrap_or(s),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(route_set: Vec<String>) -> InviteInfo {
        InviteInfo {
            call_id: "c1".into(),
            from: "<sip:alice@10.0.0.1>;tag=a1".into(),
            to: "<sip:ivr@127.0.0.1>".into(),
            caller: "alice".into(),
            dialled: "ivr".into(),
            remote_target: "sip:alice@10.0.0.1:5070".into(),
            route_set,
            cseq: 1,
            sdp: None,
        }
    }

    #[test]
    fn bye_swaps_from_and_to_and_keeps_call_id() {
        let mut d = UasDialog::new(&info(vec![]), "ourtag".into(), 100);
        let bye = d.request(Method::Bye).unwrap().to_string();
        assert!(
            bye.starts_with("BYE sip:alice@10.0.0.1:5070 SIP/2.0\r\n"),
            "{bye}"
        );
        assert!(
            bye.contains("From: <sip:ivr@127.0.0.1>;tag=ourtag"),
            "{bye}"
        );
        assert!(bye.contains("To: <sip:alice@10.0.0.1>;tag=a1"), "{bye}");
        assert!(bye.contains("CSeq: 101 BYE"), "{bye}");
        assert_eq!(
            d.next_hop(),
            NextHop::RemoteTarget("sip:alice@10.0.0.1:5070".into())
        );
    }

    #[test]
    fn route_set_becomes_route_headers_in_order() {
        let rs = vec![
            "<sip:p1.example.com;lr>".to_string(),
            "<sip:p2.example.com;lr>".to_string(),
        ];
        let mut d = UasDialog::new(&info(rs), "t".into(), 1);
        let bye = d.request(Method::Bye).unwrap().to_string();
        let p1 = bye.find("p1.example.com").unwrap();
        let p2 = bye.find("p2.example.com").unwrap();
        assert!(p1 < p2, "{bye}");
        assert_eq!(d.next_hop(), NextHop::Route("sip:p1.example.com;lr".into()));
    }

    #[test]
    fn lower_remote_cseq_is_out_of_order() {
        let mut d = UasDialog::new(&info(vec![]), "t".into(), 1);
        assert!(d.accept_remote_cseq(2));
        assert!(!d.accept_remote_cseq(1));
    }
}
