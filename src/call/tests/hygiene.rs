//! Hygiene of a call's dialogs (RFC 3261 §12.2.2, §14) and media (who may feed it, where
//! it may send): a third party who knows a Call-ID, or who sprays RTP at our ports, must
//! neither end, change nor hear the call.

use super::*;

fn caller_request(tx: Request) -> SipIn {
    SipIn::Request {
        leg: LegId::Caller,
        tx: ServerTx::detached(tx).0,
    }
}

/// A BYE like the caller's, with the tags and Call-ID given.
fn bye_with(from_tag: &str, to_tag: &str, call_id: &str) -> Request {
    let text = format!(
        "BYE sip:ivr@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKforged\r\nFrom: <sip:alice@127.0.0.1>;tag={from_tag}\r\nTo: <sip:ivr@127.0.0.1>;tag={to_tag}\r\nCall-ID: {call_id}\r\nCSeq: 5 BYE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    );
    Request::try_from(text.as_str()).unwrap()
}

fn assert_call_goes_on(call: &mut Call, now: &mut Instant) {
    assert!(!call.is_ended());
    assert!(call.poll_record().is_none());
    assert!(
        !run_for(call, now, 100).is_empty(),
        "the caller still hears the call"
    );
}

#[test]
fn bye_with_wrong_from_tag_gets_481_and_the_call_goes_on() {
    let mut now = Instant::now();
    let mut call = answered(now);
    call.handle_sip(now, caller_request(bye_with("evil", "ourtag", "test-call")));
    assert_eq!(sip_out(&mut call), vec!["481"]);
    assert_call_goes_on(&mut call, &mut now);
}

#[test]
fn bye_with_wrong_to_tag_gets_481_and_the_call_goes_on() {
    let mut now = Instant::now();
    let mut call = answered(now);
    call.handle_sip(now, caller_request(bye_with("caller", "evil", "test-call")));
    assert_eq!(sip_out(&mut call), vec!["481"]);
    assert_call_goes_on(&mut call, &mut now);
}

#[test]
fn bye_with_swapped_tags_or_wrong_call_id_gets_481() {
    let mut now = Instant::now();
    let mut call = answered(now);
    call.handle_sip(
        now,
        caller_request(bye_with("ourtag", "caller", "test-call")),
    );
    call.handle_sip(
        now,
        caller_request(bye_with("caller", "ourtag", "other-call")),
    );
    assert_eq!(sip_out(&mut call), vec!["481", "481"]);
    assert_call_goes_on(&mut call, &mut now);
    // The real BYE still ends it.
    call.handle_sip(
        now,
        caller_request(bye_with("caller", "ourtag", "test-call")),
    );
    assert_eq!(sip_out(&mut call), vec!["200"]);
    assert!(call.is_ended());
}

#[test]
fn info_or_reinvite_with_wrong_from_tag_changes_nothing() {
    let mut now = Instant::now();
    let mut call = answered(now);
    let before = run_for(&mut call, &mut now, 300);
    let info = bye_with("evil", "ourtag", "test-call")
        .to_string()
        .replace("BYE", "INFO")
        .replace(
            "Content-Length: 0\r\n\r\n",
            "Content-Type: application/dtmf-relay\r\nContent-Length: 24\r\n\r\nSignal=1\r\nDuration=160\r\n",
        );
    call.handle_sip(
        now,
        caller_request(Request::try_from(info.as_str()).unwrap()),
    );
    assert_eq!(sip_out(&mut call), vec!["481"]);
    let after = run_for(&mut call, &mut now, 200);
    assert!(
        !heard(&after).contains(&"hours".to_string()),
        "{:?}",
        heard(&after)
    );
    assert_eq!(heard(&before), vec!["welcome", "main-menu"]);
}

/// The agent's in-dialog BYE, built from our INVITE to it, with the tags given.
fn agent_bye(invite: &str, from_tag: &str, to_tag: &str) -> Request {
    let strip = |v: &str| v.split(";tag=").next().unwrap_or(v).to_string();
    let text = format!(
        "BYE sip:phonetree@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5099;branch=z9hG4bKagentbye{from_tag}\r\nFrom: {};tag={from_tag}\r\nTo: {};tag={to_tag}\r\nCall-ID: {}\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n",
        strip(header(invite, "To").unwrap()),
        strip(header(invite, "From").unwrap()),
        header(invite, "Call-ID").unwrap()
    );
    Request::try_from(text.as_str()).unwrap()
}

#[test]
fn agent_bye_with_wrong_tags_gets_481_and_the_bridge_stays() {
    let mut now = Instant::now();
    let mut call = queued_call(now);
    join(&mut call, &mut now);
    let (invite, _tx) = ring_and_answer(&mut call, &mut now);
    sip_out(&mut call);
    let ours = header(&invite, "From")
        .unwrap()
        .split(";tag=")
        .nth(1)
        .unwrap()
        .to_string();
    let outbound = |req: Request| SipIn::Request {
        leg: LegId::Outbound,
        tx: ServerTx::detached(req).0,
    };
    // UAC dialog: the agent's tag is the one its 2xx put in To; in its BYE it is in From.
    call.handle_sip(now, outbound(agent_bye(&invite, "evil", &ours)));
    call.handle_sip(now, outbound(agent_bye(&invite, "agenttag", "evil")));
    // The tags as our INVITE's 2xx carried them (ours in From): not the agent's request.
    call.handle_sip(now, outbound(agent_bye(&invite, &ours, "agenttag")));
    assert_eq!(
        sip_out_with_legs(&mut call),
        vec!["respond 481", "respond 481", "respond 481"]
    );
    assert!(!call.is_ended());
    call.handle_sip(now, outbound(agent_bye(&invite, "agenttag", &ours)));
    assert_eq!(
        sip_out_with_legs(&mut call),
        vec!["respond 200", "Caller BYE"]
    );
}

#[test]
fn callback_customer_bye_with_our_tags_the_other_way_round_gets_481() {
    let now = Instant::now();
    let mut call = callback_call(now);
    let (tx, invite) = dial_invite(&mut call);
    call.handle_sip(
        now,
        SipIn::Response {
            tx,
            response: answer_of(&invite, 200, Some(CUSTOMER_SDP)),
        },
    );
    sip_out(&mut call);
    let call_id = header(&invite, "Call-ID").unwrap().to_string();
    let bye = |from_tag: &str, to_tag: &str| {
        let text = format!(
            "BYE sip:phonetree@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5098;branch=z9hG4bKcb{from_tag}\r\nFrom: <sip:+15557654321@127.0.0.1:5098>;tag={from_tag}\r\nTo: <sip:support@127.0.0.1:5060>;tag={to_tag}\r\nCall-ID: {call_id}\r\nCSeq: 3 BYE\r\nContent-Length: 0\r\n\r\n"
        );
        caller_request(Request::try_from(text.as_str()).unwrap())
    };
    // We dialled: our tag (cbtag) is in our From, the customer's (cust) came in the 2xx To.
    call.handle_sip(now, bye("cbtag", "cust"));
    call.handle_sip(now, bye("cust", "evil"));
    call.handle_sip(now, bye("evil", "cbtag"));
    assert_eq!(sip_out(&mut call), vec!["481", "481", "481"]);
    assert!(!call.is_ended());
    call.handle_sip(now, bye("cust", "cbtag"));
    assert_eq!(sip_out(&mut call), vec!["200"]);
    assert!(call.is_ended());
}

// ---- re-INVITE glare (RFC 3261 §14.1, §14.2) --------------------------------------------

/// The status and headers of every response the call wants sent.
fn responses(call: &mut Call) -> Vec<String> {
    let mut out = Vec::new();
    while let Some(o) = call.poll_sip() {
        if let SipOut::Respond { response, .. } = o {
            out.push(response.to_string());
        }
    }
    out
}

#[test]
fn reinvite_while_our_offer_awaits_its_ack_gets_491() {
    let now = Instant::now();
    let mut call = answered(now);
    // A re-INVITE without SDP: we offer in the 200, the answer is due in the ACK.
    call.handle_sip(
        now,
        caller_request(request("INVITE", 2, Some("ourtag"), "", "")),
    );
    assert_eq!(sip_out(&mut call), vec!["200"]);
    let second = request(
        "INVITE",
        3,
        Some("ourtag"),
        "Content-Type: application/sdp\r\n",
        OFFER,
    );
    call.handle_sip(now, caller_request(second));
    assert_eq!(sip_out(&mut call), vec!["491"]);
    assert!(!call.is_ended());
}

#[test]
fn reinvite_before_the_initial_ack_gets_500_with_retry_after() {
    let now = Instant::now();
    let mut call = start(now, invite(Some(OFFER)), long_rtp_timeout());
    sip_out(&mut call);
    let again = request(
        "INVITE",
        2,
        Some("ourtag"),
        "Content-Type: application/sdp\r\n",
        OFFER,
    );
    call.handle_sip(now, caller_request(again));
    let out = responses(&mut call);
    assert_eq!(out.len(), 1, "{out:?}");
    assert!(out[0].starts_with("SIP/2.0 500"), "{}", out[0]);
    let retry: u32 = header(&out[0], "Retry-After").unwrap().parse().unwrap();
    assert!(retry <= 10);
}

#[test]
fn agent_reinvite_while_our_invite_rings_gets_491() {
    let mut now = Instant::now();
    let mut call = queued_call(now);
    join(&mut call, &mut now);
    call.handle_acd(now, AcdIn::Offer(agent_offer()));
    call.handle_outbound_socket(now, Some(20002));
    let invite = loop {
        match call.poll_sip() {
            Some(SipOut::Invite { request, .. }) => break request.to_string(),
            Some(_) => continue,
            None => panic!("no INVITE to the agent"),
        }
    };
    let ours = header(&invite, "From")
        .unwrap()
        .split(";tag=")
        .nth(1)
        .unwrap()
        .to_string();
    let reinvite = agent_bye(&invite, "agenttag", &ours)
        .to_string()
        .replace("BYE", "INVITE");
    call.handle_sip(
        now,
        SipIn::Request {
            leg: LegId::Outbound,
            tx: ServerTx::detached(Request::try_from(reinvite.as_str()).unwrap()).0,
        },
    );
    assert_eq!(sip_out_with_legs(&mut call), vec!["respond 491"]);
    assert!(!call.is_ended());
}

#[test]
fn customer_reinvite_while_we_dial_them_gets_491() {
    let now = Instant::now();
    let mut call = callback_call(now);
    let (_tx, invite) = dial_invite(&mut call);
    let text = format!(
        "INVITE sip:phonetree@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5098;branch=z9hG4bKglare\r\nFrom: <sip:+15557654321@127.0.0.1:5098>;tag=cust\r\nTo: <sip:support@127.0.0.1:5060>;tag=cbtag\r\nCall-ID: {}\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n",
        header(&invite, "Call-ID").unwrap()
    );
    call.handle_sip(
        now,
        caller_request(Request::try_from(text.as_str()).unwrap()),
    );
    assert_eq!(sip_out(&mut call), vec!["491"]);
}
