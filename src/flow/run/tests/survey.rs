//! `survey` nodes on a fake clock: an answer, a wrong key then an answer,
//! silence, barge-in, type-ahead, and a survey never asked twice in a call.

use super::*;

const SURVEY: &str = r#"
routes: [{ number: default, flow: f }]
flows:
  f:
    start: served
    nodes:
      served: { play: [hours], next: rate_us }
      rate_us:
        survey:
          name: csat
          prompt: [survey-rate]
          scale: 5
          timeout: 5s
          retries: 2
          invalid: [survey-invalid]
          no_input: [no-input]
          thanks: [survey-thanks]
        next: bye
      bye: { play: [goodbye], next: end }
      end: { hangup: {} }
"#;

/// `hours` played (0-2 s), the survey prompt played (2-6 s): listening since 6 s.
fn at_survey(t0: Instant) -> Run {
    let mut run = start(SURVEY, t0);
    assert_eq!(drain(&mut run), [play(&["hours"], false)]);
    run.handle_playback_finished(t0 + secs(2.0));
    assert_eq!(drain(&mut run), [play(&["survey-rate"], true)]);
    let offered = run.surveys().to_vec();
    assert_eq!(offered.len(), 1, "offered when the node starts");
    assert_eq!(
        (offered[0].name.as_str(), offered[0].scale, offered[0].score),
        ("csat", 5, None)
    );
    assert_eq!(offered[0].offered_at, t0 + secs(2.0));
    assert!(!offered[0].done);
    run.handle_playback_finished(t0 + secs(6.0));
    assert_eq!(run.poll_timeout(), Some(t0 + secs(11.0)));
    run
}

fn only_result(run: &Run) -> SurveyResult {
    assert_eq!(run.surveys().len(), 1, "{:?}", run.surveys());
    run.surveys()[0].clone()
}

#[test]
fn survey_key_in_scale_is_the_score_then_thanks_then_next() {
    let t0 = Instant::now();
    let mut run = at_survey(t0);
    run.handle_digit(t0 + secs(7.0), d('4'));
    assert_eq!(drain(&mut run), [play(&["survey-thanks"], false)]);
    let r = only_result(&run);
    assert_eq!(r.score, Some(4));
    assert_eq!(r.answered_at, Some(t0 + secs(7.0)));
    assert!(r.done);
    // No timer while thanking; then `next`.
    assert_eq!(run.poll_timeout(), None);
    run.handle_playback_finished(t0 + secs(8.0));
    assert_eq!(drain(&mut run), [play(&["goodbye"], false)]);
    assert_eq!(run.path(), ["served", "rate_us", "bye"]);
}

#[test]
fn survey_key_outside_scale_is_invalid_then_a_valid_key_answers() {
    let t0 = Instant::now();
    let mut run = at_survey(t0);
    // 6 is above the scale of 5.
    run.handle_digit(t0 + secs(7.0), d('6'));
    assert_eq!(
        drain(&mut run),
        [play(&["survey-invalid", "survey-rate"], true)]
    );
    assert_eq!(only_result(&run).score, None);
    run.handle_playback_finished(t0 + secs(11.0));
    run.handle_digit(t0 + secs(12.0), d('5'));
    assert_eq!(drain(&mut run), [play(&["survey-thanks"], false)]);
    assert_eq!(only_result(&run).score, Some(5));
}

#[test]
fn survey_zero_star_and_pound_are_not_scores() {
    for key in ['0', '*', '#'] {
        let t0 = Instant::now();
        let mut run = at_survey(t0);
        run.handle_digit(t0 + secs(7.0), d(key));
        assert_eq!(
            drain(&mut run),
            [play(&["survey-invalid", "survey-rate"], true)],
            "key {key}"
        );
        assert_eq!(only_result(&run).score, None, "key {key}");
    }
}

#[test]
fn survey_silence_asks_again_then_goes_on_unanswered() {
    let t0 = Instant::now();
    let mut run = at_survey(t0);
    run.handle_timeout(t0 + secs(11.0));
    assert_eq!(drain(&mut run), [play(&["no-input", "survey-rate"], true)]);
    run.handle_playback_finished(t0 + secs(15.0));
    assert_eq!(run.poll_timeout(), Some(t0 + secs(20.0)));
    // Second silence with `retries: 2`: the feedback plays in full, then `next`.
    run.handle_timeout(t0 + secs(20.0));
    assert_eq!(drain(&mut run), [play(&["no-input"], false)]);
    let r = only_result(&run);
    assert_eq!((r.score, r.answered_at, r.done), (None, None, true));
    run.handle_playback_finished(t0 + secs(21.0));
    assert_eq!(drain(&mut run), [play(&["goodbye"], false)]);
    assert_eq!(run.path(), ["served", "rate_us", "bye"]);
}

#[test]
fn survey_key_during_the_prompt_barges_in_and_answers() {
    let t0 = Instant::now();
    let mut run = start(SURVEY, t0);
    drain(&mut run);
    run.handle_playback_finished(t0 + secs(2.0));
    assert_eq!(drain(&mut run), [play(&["survey-rate"], true)]);
    run.handle_digit(t0 + secs(3.0), d('3'));
    assert_eq!(
        drain(&mut run),
        [Action::StopPlayback, play(&["survey-thanks"], false)]
    );
    let r = only_result(&run);
    assert_eq!((r.score, r.answered_at), (Some(3), Some(t0 + secs(3.0))));
}

#[test]
fn survey_key_typed_during_the_previous_prompt_answers_without_the_prompt() {
    let t0 = Instant::now();
    let mut run = start(SURVEY, t0);
    assert_eq!(drain(&mut run), [play(&["hours"], false)]);
    // Typed ahead while `hours` plays (no barge-in there): kept for the survey.
    run.handle_digit(t0 + secs(1.0), d('2'));
    assert_eq!(drain(&mut run), []);
    run.handle_playback_finished(t0 + secs(2.0));
    // The survey prompt is skipped (barge-in with keys waiting) and the key answers.
    assert_eq!(drain(&mut run), [play(&["survey-thanks"], false)]);
    let r = only_result(&run);
    assert_eq!(r.score, Some(2));
    assert_eq!(r.answered_at, Some(t0 + secs(2.0)));
}

#[test]
fn survey_without_barge_in_keeps_the_key_until_the_prompt_ends() {
    let t0 = Instant::now();
    let yaml = SURVEY.replace(
        "thanks: [survey-thanks]",
        "thanks: [survey-thanks]\n          barge_in: false",
    );
    let mut run = start(&yaml, t0);
    drain(&mut run);
    run.handle_playback_finished(t0 + secs(2.0));
    assert_eq!(drain(&mut run), [play(&["survey-rate"], false)]);
    run.handle_digit(t0 + secs(3.0), d('1'));
    assert_eq!(drain(&mut run), [], "the prompt plays on");
    assert_eq!(only_result(&run).score, None);
    run.handle_playback_finished(t0 + secs(6.0));
    assert_eq!(drain(&mut run), [play(&["survey-thanks"], false)]);
    let r = only_result(&run);
    assert_eq!((r.score, r.answered_at), (Some(1), Some(t0 + secs(6.0))));
}

#[test]
fn survey_answered_once_is_not_asked_again_in_the_call() {
    let t0 = Instant::now();
    let yaml = SURVEY.replace(
        "bye: { play: [goodbye], next: end }",
        "bye: { play: [goodbye], next: rate_us }",
    );
    let mut run = start(&yaml, t0);
    drain(&mut run);
    run.handle_playback_finished(t0 + secs(2.0));
    drain(&mut run);
    run.handle_digit(t0 + secs(3.0), d('5'));
    drain(&mut run);
    run.handle_playback_finished(t0 + secs(4.0));
    assert_eq!(drain(&mut run), [play(&["goodbye"], false)]);
    // Back at the survey: straight on to `bye`, the answer kept.
    run.handle_playback_finished(t0 + secs(6.0));
    assert_eq!(drain(&mut run), [play(&["goodbye"], false)]);
    assert_eq!(run.path(), ["served", "rate_us", "bye", "rate_us", "bye"]);
    let r = only_result(&run);
    assert_eq!((r.score, r.answered_at), (Some(5), Some(t0 + secs(3.0))));
}

#[test]
fn survey_without_thanks_goes_to_next_at_once() {
    let t0 = Instant::now();
    let yaml = SURVEY.replace("          thanks: [survey-thanks]\n", "");
    let mut run = start(&yaml, t0);
    drain(&mut run);
    run.handle_playback_finished(t0 + secs(2.0));
    drain(&mut run);
    run.handle_digit(t0 + secs(3.0), d('1'));
    assert_eq!(
        drain(&mut run),
        [Action::StopPlayback, play(&["goodbye"], false)]
    );
    assert_eq!(only_result(&run).score, Some(1));
}
