//! One dialog (RFC 3261 §12), from either side: its identifiers, route set and our CSeq,
//! and how to build requests inside it (§12.2.1.1). A UAS dialog is made from the INVITE we
//! answered (§12.1.1), a UAC dialog from the INVITE we sent and the response that carried
//! the peer's tag (§12.1.2). Pure data: no I/O, no clock.

use super::message::InviteInfo;
use super::rsip::headers::{Header, Headers, make_header};
use super::rsip::prelude::HeadersExt;
use super::{Method, PRODUCT, Request, Response};

/// Where an in-dialog request should go first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NextHop {
    /// The first entry of the route set (loose routing, RFC 3261 §16.12.1.1).
    Route(String),
    /// No route set: the remote target (the caller's Contact).
    RemoteTarget(String),
}

/// Which side of the dialog we are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// We answered the INVITE (the caller's leg).
    Uas,
    /// We sent the INVITE (an agent or transfer leg).
    Uac,
}

#[derive(Debug, Clone)]
pub struct Dialog {
    pub role: Role,
    pub call_id: String,
    pub local_tag: String,
    /// The peer's tag (their From tag as UAS, their To tag as UAC).
    pub remote_tag: Option<String>,
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

impl Dialog {
    /// Builds the UAS dialog from the INVITE (§12.1.1). `initial_local_cseq` should be
    /// random-ish; our first request uses it.
    pub fn uas(invite: &InviteInfo, local_tag: String, initial_local_cseq: u32) -> Dialog {
        Dialog {
            role: Role::Uas,
            remote_tag: tag_of(&invite.from),
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

    /// Builds the UAC dialog from the INVITE we sent and a response that carries the peer's
    /// To tag (§12.1.2): the remote tag from `To`, the remote target from `Contact`, the route
    /// set from `Record-Route` in reverse order, our CSeq continuing from the INVITE's.
    /// `None` when the response has no To tag or no usable Contact (a 2xx MUST have both).
    pub fn uac(invite: &Request, response: &Response) -> Option<Dialog> {
        let to = response.to_header().ok()?;
        let remote_tag = to.tag().ok().flatten()?.value().to_string();
        let contact = response.contact_header().ok()?;
        let remote_target = super::message::raw_uri(contact.value())?.to_string();
        super::rsip::Uri::try_from(remote_target.as_str()).ok()?;
        let from = invite.from_header().ok()?;
        let local_tag = from.tag().ok().flatten()?.value().to_string();
        let call_id = invite.call_id_header().ok()?.value().to_string();
        let local_cseq = invite.cseq_header().ok()?.seq().ok()?;
        let mut route_set: Vec<String> = response
            .headers
            .iter()
            .filter_map(|h| match h {
                Header::RecordRoute(rr) => Some(rr.value().to_string()),
                _ => None,
            })
            .flat_map(|v| super::message::split_header_list(&v))
            .collect();
        route_set.reverse();
        Some(Dialog {
            role: Role::Uac,
            call_id,
            local_tag,
            remote_tag: Some(remote_tag),
            local_uri: from.value().to_string(),
            remote_uri: to.value().to_string(),
            remote_target,
            route_set,
            local_cseq,
            remote_cseq: 0,
        })
    }

    /// True when an in-dialog request names this dialog (RFC 3261 §12.2.2): same Call-ID,
    /// our tag in `To` and the peer's in `From`. A request that knows only the Call-ID (or
    /// one tag) must not end or change the call; it gets 481. The peer's requests carry the
    /// tags this way round whichever side sent the INVITE: on a leg we placed (UAC) the
    /// peer's tag came in the 2xx's `To`, and now comes in the `From` of its BYE.
    pub fn matches_request(&self, req: &Request) -> bool {
        let call_id = req.call_id_header().map(|c| c.value().to_string());
        if call_id.as_deref().ok() != Some(self.call_id.as_str()) {
            return false;
        }
        if super::message::to_tag(req).as_deref() != Some(self.local_tag.as_str()) {
            return false;
        }
        self.matches_remote_tag(super::message::from_tag(req).as_deref())
    }

    /// True when `from_tag` of an in-dialog request is the peer's tag.
    pub fn matches_remote_tag(&self, from_tag: Option<&str>) -> bool {
        match (&self.remote_tag, from_tag) {
            (Some(ours), Some(theirs)) => ours == theirs,
            // RFC 2543 peers may not tag their From; accept only if we never saw a tag.
            (None, None) => true,
            _ => false,
        }
    }

    /// The ACK for a 2xx to our INVITE (§13.2.2.4): same CSeq number as the INVITE, sent
    /// end to end along the route set to the remote target (a new transaction of its own).
    pub fn ack(&self, invite_cseq: u32) -> Option<Request> {
        let mut req = self.build(Method::Ack, invite_cseq)?;
        req.headers
            .retain(|h| !matches!(h, Header::ContentLength(_)));
        req.headers
            .push(make_header("Content-Length", "0".to_string()));
        Some(req)
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
        let cseq = self.local_cseq.wrapping_add(1).max(1);
        let req = self.build(method, cseq)?;
        self.local_cseq = cseq;
        Some(req)
    }

    fn build(&self, method: Method, cseq: u32) -> Option<Request> {
        let uri = super::rsip::Uri::try_from(self.remote_target.as_str()).ok()?;
        let mut headers: Vec<Header> = Vec::with_capacity(10);
        // §12.2.1.1: with a loose-routing route set, Route carries it in order and the
        // Request-URI is the remote target.
        for r in &self.route_set {
            headers.push(make_header("Route", r.clone()));
        }
        headers.push(make_header("From", self.local_uri.clone()));
        headers.push(make_header("To", self.remote_uri.clone()));
        headers.push(make_header("Call-ID", self.call_id.clone()));
        headers.push(make_header("CSeq", format!("{cseq} {method}")));
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

/// The `tag` parameter of a From/To header value (after the URI's closing `>`, if any).
fn tag_of(value: &str) -> Option<String> {
    let params = match value.rfind('>') {
        Some(i) => &value[i + 1..],
        None => value,
    };
    params
        .split(';')
        .skip(1)
        .filter_map(|p| p.split_once('='))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("tag"))
        .map(|(_, v)| v.trim().to_string())
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
        let mut d = Dialog::uas(&info(vec![]), "ourtag".into(), 100);
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
        let mut d = Dialog::uas(&info(rs), "t".into(), 1);
        let bye = d.request(Method::Bye).unwrap().to_string();
        let p1 = bye.find("p1.example.com").unwrap();
        let p2 = bye.find("p2.example.com").unwrap();
        assert!(p1 < p2, "{bye}");
        assert_eq!(d.next_hop(), NextHop::Route("sip:p1.example.com;lr".into()));
    }

    #[test]
    fn lower_remote_cseq_is_out_of_order() {
        let mut d = Dialog::uas(&info(vec![]), "t".into(), 1);
        assert!(d.accept_remote_cseq(2));
        assert!(!d.accept_remote_cseq(1));
    }

    fn our_invite() -> Request {
        let sdp = "v=0\r\n".to_string();
        let mut inv = crate::sip::message::invite(&crate::sip::message::OutgoingInvite {
            request_uri: "sip:1001@127.0.0.1:5080",
            from: "\"Support\" <sip:support@127.0.0.1>",
            to: "<sip:1001@127.0.0.1>",
            call_id: "b-leg-1",
            local_tag: "ourtag",
            cseq: 7,
            contact: "<sip:support@127.0.0.1:5060>",
            extra_headers: &[("X-Phonetree-Customer", "Ada\r\nEvil: 1".to_string())],
            sdp,
        })
        .unwrap();
        inv.headers.push_front(make_header(
            "Via",
            "SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKb1".to_string(),
        ));
        inv
    }

    fn ok_200() -> Response {
        let text = "SIP/2.0 200 OK\r\n\
Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKb1\r\n\
Record-Route: <sip:p1.example.com;lr>, <sip:p2.example.com;lr>\r\n\
From: \"Support\" <sip:support@127.0.0.1>;tag=ourtag\r\n\
To: <sip:1001@127.0.0.1>;tag=agenttag\r\n\
Call-ID: b-leg-1\r\n\
CSeq: 7 INVITE\r\n\
Contact: <sip:1001@127.0.0.1:5080;transport=udp>\r\n\
Content-Length: 0\r\n\r\n";
        Response::try_from(text).unwrap()
    }

    #[test]
    fn uac_dialog_takes_remote_tag_target_and_reversed_route_set_from_2xx() {
        let d = Dialog::uac(&our_invite(), &ok_200()).unwrap();
        assert_eq!(d.role, Role::Uac);
        assert_eq!(d.remote_tag.as_deref(), Some("agenttag"));
        assert_eq!(d.local_tag, "ourtag");
        assert_eq!(d.call_id, "b-leg-1");
        // §12.1.2: the UAC's route set is the Record-Route list reversed.
        assert_eq!(d.next_hop(), NextHop::Route("sip:p2.example.com;lr".into()));
    }

    #[test]
    fn ack_for_2xx_uses_invite_cseq_and_dialog_tags() {
        let d = Dialog::uac(&our_invite(), &ok_200()).unwrap();
        let ack = d.ack(7).unwrap().to_string();
        // rsip re-serialises the transport parameter in upper case.
        assert!(
            ack.to_ascii_lowercase()
                .starts_with("ack sip:1001@127.0.0.1:5080;transport=udp sip/2.0\r\n"),
            "{ack}"
        );
        assert!(ack.contains("CSeq: 7 ACK"), "{ack}");
        assert!(
            ack.contains("To: <sip:1001@127.0.0.1>;tag=agenttag"),
            "{ack}"
        );
        assert!(ack.contains("tag=ourtag"), "{ack}");
    }

    #[test]
    fn bye_in_uac_dialog_increments_cseq_past_the_invite() {
        let mut d = Dialog::uac(&our_invite(), &ok_200()).unwrap();
        let bye = d.request(Method::Bye).unwrap().to_string();
        assert!(bye.contains("CSeq: 8 BYE"), "{bye}");
        assert!(bye.contains("Route: <sip:p2.example.com;lr>"), "{bye}");
    }

    #[test]
    fn response_without_to_tag_makes_no_dialog() {
        let text = ok_200().to_string().replace(";tag=agenttag", "");
        let resp = Response::try_from(text.as_str()).unwrap();
        assert!(Dialog::uac(&our_invite(), &resp).is_none());
    }

    #[test]
    fn cancel_matches_the_invite_branch_and_cseq_number() {
        let cancel = crate::sip::message::cancel(&our_invite()).to_string();
        assert!(
            cancel.starts_with("CANCEL sip:1001@127.0.0.1:5080 SIP/2.0\r\n"),
            "{cancel}"
        );
        assert!(cancel.contains("branch=z9hG4bKb1"), "{cancel}");
        assert!(cancel.contains("CSeq: 7 CANCEL"), "{cancel}");
        assert!(!cancel.contains("application/sdp"), "{cancel}");
    }

    #[test]
    fn customer_data_cannot_inject_headers() {
        let inv = our_invite().to_string();
        assert!(inv.contains("X-Phonetree-Customer: Ada  Evil: 1"), "{inv}");
    }

    fn in_dialog(from_tag: &str, to_tag: &str, call_id: &str) -> Request {
        let text = format!(
            "BYE sip:ivr@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1:5070;branch=z9hG4bKq\r\n\
             From: <sip:peer@10.0.0.1>;tag={from_tag}\r\nTo: <sip:us@127.0.0.1>;tag={to_tag}\r\n\
             Call-ID: {call_id}\r\nCSeq: 9 BYE\r\nContent-Length: 0\r\n\r\n"
        );
        Request::try_from(text.as_str()).unwrap()
    }

    #[test]
    fn uas_dialog_matches_call_id_and_both_tags() {
        let d = Dialog::uas(&info(vec![]), "ourtag".into(), 1);
        assert!(d.matches_request(&in_dialog("a1", "ourtag", "c1")));
        assert!(!d.matches_request(&in_dialog("evil", "ourtag", "c1")));
        assert!(!d.matches_request(&in_dialog("a1", "evil", "c1")));
        assert!(!d.matches_request(&in_dialog("a1", "ourtag", "c2")));
        // The tags swapped, as if we had sent the request to ourselves.
        assert!(!d.matches_request(&in_dialog("ourtag", "a1", "c1")));
    }

    #[test]
    fn uac_dialog_takes_the_peers_tag_from_from_and_ours_from_to() {
        let d = Dialog::uac(&our_invite(), &ok_200()).unwrap();
        // The agent's BYE: its tag (from our 2xx's To) in From, ours in To.
        assert!(d.matches_request(&in_dialog("agenttag", "ourtag", "b-leg-1")));
        // The tags as they were on our INVITE's 2xx (From ours, To theirs) are not a
        // request from the agent.
        assert!(!d.matches_request(&in_dialog("ourtag", "agenttag", "b-leg-1")));
        assert!(!d.matches_request(&in_dialog("agenttag", "other", "b-leg-1")));
        assert!(!d.matches_request(&in_dialog("other", "ourtag", "b-leg-1")));
    }

    #[test]
    fn every_request_we_send_carries_max_forwards() {
        // RFC 3261 §8.1.1.6: a UAC MUST insert Max-Forwards (70) in every request.
        let mut uas = Dialog::uas(&info(vec![]), "t".into(), 1);
        let mut uac = Dialog::uac(&our_invite(), &ok_200()).unwrap();
        let mut sent = vec![
            our_invite().to_string(),
            crate::sip::message::cancel(&our_invite()).to_string(),
            uac.ack(7).unwrap().to_string(),
        ];
        for m in [Method::Bye, Method::Info, Method::Options] {
            sent.push(uas.request(m.clone()).unwrap().to_string());
            sent.push(uac.request(m).unwrap().to_string());
        }
        for r in sent {
            assert_eq!(r.matches("Max-Forwards: 70\r\n").count(), 1, "{r}");
        }
    }

    #[test]
    fn uas_dialog_checks_the_callers_from_tag() {
        let d = Dialog::uas(&info(vec![]), "t".into(), 1);
        assert!(d.matches_remote_tag(Some("a1")));
        assert!(!d.matches_remote_tag(Some("evil")));
        assert!(!d.matches_remote_tag(None));
    }
}
