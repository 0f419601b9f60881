#!/usr/bin/env bash
# Regenerates the demo prompts: espeak-ng (voice en-us, 150 wpm) + sox.
# Output: 8 kHz mono 16-bit signed PCM WAVs under prompts/en/ (the format the
# engine loads with hound; any other format is refused at start).
#   prompts/en/*.wav       whole prompts (band-limited 300-3400 Hz, -3 dBFS peak)
#   prompts/en/say/*.wav   fragments for spoken numbers/dates, leading and trailing
#                          silence trimmed so they can be concatenated
#   prompts/en/hold-music.wav  a 20 s loop of soft chords (sox synth, no speech)
# Requires: espeak-ng, sox (Debian: apt-get install -y espeak-ng sox).
# The WAVs are committed; rerun only when a prompt's text changes.
# Usage: generate.sh [NAME...]  -- with names (e.g. `hold-music say/minutes`), only
# those are rewritten, so the other committed WAVs stay byte for byte as they are.
set -euo pipefail

VOICE=${VOICE:-en-us}
RATE=${RATE:-150}
here=$(cd "$(dirname "$0")" && pwd)
out="$here/en"
say="$out/say"

for tool in espeak-ng sox; do
    command -v "$tool" >/dev/null || { echo "generate.sh: $tool not found (apt-get install -y espeak-ng sox)" >&2; exit 1; }
done

only=("$@")
# want NAME: true when NAME is to be (re)generated.
want() {
    [ ${#only[@]} -eq 0 ] && return 0
    local n
    for n in "${only[@]}"; do [ "$n" = "$1" ] && return 0; done
    return 1
}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$out" "$say"

# prompt NAME TEXT: a full prompt.
prompt() {
    local name=$1 text=$2
    want "$name" || return 0
    espeak-ng -v "$VOICE" -s "$RATE" -w "$tmp/raw.wav" "$text"
    sox "$tmp/raw.wav" -r 8000 -c 1 -b 16 -e signed-integer "$out/$name.wav" \
        highpass 300 lowpass 3400 gain -n -3
}

# fragment NAME TEXT: a trimmed piece for concatenation.
fragment() {
    local name=$1 text=$2
    want "say/$name" || return 0
    espeak-ng -v "$VOICE" -s "$RATE" -w "$tmp/raw.wav" "$text"
    sox "$tmp/raw.wav" -r 8000 -c 1 -b 16 -e signed-integer "$say/$name.wav" \
        highpass 300 lowpass 3400 \
        silence 1 0.02 0.5% reverse silence 1 0.02 0.5% reverse gain -n -3
}

# phrase NAME TEXT PAUSE: a whole-prompt piece that is concatenated with `say`
# fragments (queue announcements): trimmed like a fragment, then PAUSE seconds
# of silence so the next sentence does not run into it.
phrase() {
    local name=$1 text=$2 pause=$3
    want "$name" || return 0
    espeak-ng -v "$VOICE" -s "$RATE" -w "$tmp/raw.wav" "$text"
    sox "$tmp/raw.wav" -r 8000 -c 1 -b 16 -e signed-integer "$out/$name.wav" \
        highpass 300 lowpass 3400 \
        silence 1 0.02 0.5% reverse silence 1 0.02 0.5% reverse gain -n -3 pad 0 "$pause"
}

# hold_music: four soft chords, 5 s each, as a seamless 20 s loop. Every note
# lies between 190 and 600 Hz, below the lowest DTMF tone (697 Hz), and sine
# tones have no harmonics: the in-band DTMF detector cannot hear a key in it
# (tests/prompts_never_talk_off.rs checks).
hold_music() {
    want hold-music || return 0
    local chords=("261.63 329.63 392.00" "220.00 261.63 329.63" "174.61 349.23 440.00" "196.00 246.94 392.00")
    local i=0 parts=()
    for c in "${chords[@]}"; do
        read -r a b d <<<"$c"
        sox -n -r 8000 -c 1 -b 16 -e signed-integer "$tmp/c$i.wav" \
            synth 5 sine "$a" synth 5 sine mix "$b" synth 5 sine mix "$d" \
            tremolo 0.5 20 fade h 0.6 5 0.6 gain -n -14
        parts+=("$tmp/c$i.wav")
        i=$((i + 1))
    done
    sox "${parts[@]}" "$out/hold-music.wav"
}

prompt welcome           "Thank you for calling the Phonetree demo."
prompt main-menu         "For opening hours, press 1. For support, press 2. For your account, press 3. To hear this menu again, press star. To speak to an agent, press 0."
prompt hours             "We are open Monday to Friday, from nine A M to five P M."
prompt support           "For support, please visit our website, or stay on the line for an agent."
prompt agents-busy       "All our agents are busy right now. Please call again later."
prompt invalid           "Sorry, that is not a valid choice."
prompt no-input          "Sorry, I did not hear your choice."
prompt goodbye           "Thank you for calling. Goodbye."
prompt enter-customer-id "Please enter your customer number, followed by the pound key."
prompt enter-pin         "Please enter your four digit PIN."
# Account services (flows/main.yaml, option 3). Each starts with different
# words from every other prompt, so tests can tell them apart by their audio.
prompt one-moment            "One moment please."
prompt greeting-known        "Welcome back. We recognised your phone number."
prompt customer-not-found    "That customer number was not found."
prompt details-mismatch      "Those details do not match our records."
prompt pin-wrong             "That PIN is not correct."
prompt pin-locked            "Too many wrong PIN entries. Your account is locked for a while."
prompt account-menu          "Account services. For your balance, press 1. For your last order, press 2. For your next appointment, press 3. To go back to the main menu, press 9. To speak to an agent, press 0."
prompt balance-is            "Your balance is"
prompt order-shipped-on      "Good news. Your last order shipped on"
prompt order-placed          "We are preparing your last order. Expected delivery is"
prompt order-delivered       "The last order on your account has been delivered."
prompt order-cancelled       "Your last order was cancelled."
prompt no-order              "There are no orders on file for you."
prompt appointment-at        "Your next appointment is on"
prompt appointment-menu      "To confirm this appointment, press 1. To cancel it, press 2. To go back, press 9. To speak to an agent, press 0."
prompt appointment-confirmed "Done. Your appointment is confirmed."
prompt appointment-cancelled "Cancelled. Your appointment has been removed."
prompt no-appointment        "You have no upcoming appointments."
prompt directory-unavailable "Our customer records are not available right now."
prompt agent-transfer        "Routing you to an agent."
# Agent queues (flows/main.yaml, `agent_queue`). Announcements are built from
# phrases and `say` fragments: "You are number" 3 "in the queue." "Your
# estimated wait time is" "about" 5 "minutes" / "less than a minute".
hold_music
phrase queue-position        "You are number" 0
phrase queue-position-end    "in the queue." 0.35
phrase queue-wait            "Your estimated wait time is" 0
prompt queue-shortly         "We will be with you shortly."
prompt queue-leave-hint      "Prefer a call back? Press 1, and keep your place in the line."
prompt queue-no-agents       "Sorry, no agents are available at the moment."
prompt queue-overflow        "We are sorry to keep you waiting so long."
prompt callback-offer        "If you would like an agent to call you back, press 1. To go back to the main menu, press 9."
prompt callback-registered   "Done. An agent will call you back at this number as soon as possible."
prompt callback-duplicate    "Good news, you are already on our list for a call back."
prompt callback-failed       "Unfortunately we could not book a call back right now."
prompt whisper-support       "Support call."
prompt callback-greeting     "Hello, this is the call back you asked for. Please hold: an agent will be with you in a moment."
prompt agent-logged-in       "You are logged in. Calls will come to this phone."
prompt agent-logged-out      "You are logged out."
prompt agent-paused          "You are paused. No calls will come to this phone."
prompt agent-unpaused        "You are available again."
prompt agent-refused         "Sorry, this phone is not registered as an agent."
prompt transfer-failed       "That line is not answering. Let us try something else."
# The satisfaction survey after self-service (flows/main.yaml, `rate_us`).
prompt survey-rate           "Before you go, how satisfied were you with this call? Press a key from 1, not satisfied, to 5, very satisfied."
prompt survey-invalid        "Only the keys 1 to 5 count as an answer."
prompt survey-thanks         "Many thanks for your feedback."

# Numbers 0-19, tens.
ones=(zero one two three four five six seven eight nine ten eleven twelve thirteen
      fourteen fifteen sixteen seventeen eighteen nineteen)
for i in "${!ones[@]}"; do fragment "$i" "${ones[$i]}"; done
tens=([20]=twenty [30]=thirty [40]=forty [50]=fifty [60]=sixty [70]=seventy [80]=eighty [90]=ninety)
for n in "${!tens[@]}"; do fragment "$n" "${tens[$n]}"; done

# Words (file name = word unless given).
for w in hundred thousand million dollars dollar cents cent and point minus \
         january february march april may june july august september october november december \
         monday tuesday wednesday thursday friday saturday sunday star pound; do
    fragment "$w" "$w"
done
# Currencies other than dollars (say: { money: .., currency: EUR|GBP }).
for w in euro euros penny pence; do fragment "$w" "$w"; done
fragment pound-sterling  "pound"
fragment pounds-sterling "pounds"
fragment am     "A M"
fragment pm     "P M"
fragment oclock "o'clock"
# Queue wait announcements.
fragment about              "about"
fragment minute             "minute"
fragment minutes            "minutes"
fragment less-than-a-minute "less than a minute"

# Ordinals 1st..31st as ord-N.
ordinals=(zeroth first second third fourth fifth sixth seventh eighth ninth tenth
          eleventh twelfth thirteenth fourteenth fifteenth sixteenth seventeenth
          eighteenth nineteenth twentieth "twenty first" "twenty second" "twenty third"
          "twenty fourth" "twenty fifth" "twenty sixth" "twenty seventh" "twenty eighth"
          "twenty ninth" thirtieth "thirty first")
for n in $(seq 1 31); do fragment "ord-$n" "${ordinals[$n]}"; done

count=$(find "$out" -name '*.wav' | wc -l)
echo "generate.sh: wrote $count WAVs under $out ($(du -sh "$out" | cut -f1))"
