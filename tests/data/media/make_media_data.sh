#!/bin/sh
# Regenerates the audio used by tests/unit/media (talk-off tests of the DTMF detector).
# Needs espeak-ng and sox. Output: 8 kHz mono G.711 mu-law WAVs (what a call carries),
# about 1 MB in total. The committed files are the reference; this script documents how
# they were made (espeak-ng and sox versions may change the exact samples).
set -eu
cd "$(dirname "$0")"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# --- speech: ~60 s, several voices, pitches and speeds -------------------------------
i=0
speak() { # voice pitch speed text
    i=$((i + 1))
    espeak-ng -v "$1" -p "$2" -s "$3" -w "$tmp/s$(printf %03d $i).wav" "$4"
    sox "$tmp/s$(printf %03d $i).wav" -r 8000 "$tmp/r$(printf %03d $i).wav" rate -v pad 0 0.3
}
speak en-us 50 160 "Thank you for calling. Your call is important to us, please stay on the line."
speak en-gb+f3 60 150 "For billing questions, press one. For technical support, press two."
speak en-us+m3 35 140 "The quick brown fox jumps over the lazy dog near the river bank."
speak en-gb-scotland+f5 70 170 "Could you repeat the account number, slowly, one digit at a time?"
speak en-us+f2 80 180 "Seven hundred and forty two dollars and sixteen cents are due on March the ninth."
speak en-gb+m7 40 130 "Hello? Hello! Is anybody there? I can hardly hear you, the line is breaking up."
speak en-us+f4 65 175 "She sells sea shells by the sea shore, and the shells she sells are surely seashells."
speak en-gb-x-rp 45 155 "Please hold while we transfer you to the next available agent."
speak en-us+klatt 55 165 "Ooh, aah, eee, ohh, mmm: a long vowel sound, then a hum, and a whistle."
speak en-us+f5 90 150 "One, two, three, four, five, six, seven, eight, nine, zero, star, pound."
speak en-gb+croak 30 145 "Our offices are open Monday to Friday, from nine in the morning until five thirty."
speak en-us+m1 50 190 "Wow, that is amazing! Really? Yes, absolutely, we shipped it yesterday afternoon."
speak en-gb+f1 75 160 "Goodbye, and have a wonderful evening."
speak en-us+m2 60 150 "I would like to speak with someone about my order, it arrived damaged last week."
sox "$tmp"/r*.wav -e u-law -b 8 speech_8k.wav trim 0 60 norm -3

# --- music 1: plucked chords, I-V-vi-IV in several keys and octaves -------------------
n=0
chord() { # seconds note...
    n=$((n + 1))
    d=$1
    shift
    args=""
    for note in "$@"; do args="$args pluck $note"; done
    # shellcheck disable=SC2086
    sox -r 48000 -c $# -n -b 16 "$tmp/c$(printf %03d $n).wav" synth "$d" $args remix - rate 8000
}
chord 0.9 C4 E4 G4 C5;    chord 0.9 G3 D4 G4 B4;    chord 0.9 A3 E4 A4 C5;    chord 0.9 F3 C4 F4 A4
chord 0.9 G4 B4 D5 G5;    chord 0.9 D5 F#5 A5;      chord 0.9 E5 G5 B5 E6;    chord 0.9 C5 E5 G5 C6
chord 0.9 D4 F#4 A4 D5;   chord 0.9 A4 C#5 E5 A5;   chord 0.9 B4 D5 F#5 B5;   chord 0.9 G4 B4 D5 G5
chord 0.9 F5 A5 C6 F6;    chord 0.9 C5 E5 G5 Bb5;   chord 0.9 D5 F5 A5 D6;    chord 0.9 Bb4 D5 F5 Bb5
chord 0.9 E4 G#4 B4 E5;   chord 0.9 B4 D#5 F#5 A5;  chord 0.9 C#5 E5 G#5 C#6; chord 0.9 A4 C#5 E5 A5
chord 0.9 Eb5 G5 Bb5 Eb6; chord 0.9 Bb5 D6 F6;      chord 0.9 C6 Eb6 G6;      chord 0.9 Ab5 C6 Eb6 Ab6
chord 0.9 F#5 A#5 C#6;    chord 0.9 A5 C#6 E6 A6;   chord 0.9 E5 G5 B5 D6;    chord 0.9 D5 F#5 A5 C6
chord 0.9 G5 B5 D6 F6;    chord 0.9 C5 E5 G5 B5 E6; chord 0.9 A3 C4 E4 G4 C5; chord 1.5 C4 G4 C5 E5 G5 C6
sox "$tmp"/c*.wav -e u-law -b 8 music_chords_8k.wav norm -3

# --- music 2: a melody (sawtooth and square leads) over a bass and a sweeping pad -----
m=0
note() { # wave note seconds
    m=$((m + 1))
    sox -r 8000 -n -b 16 "$tmp/m$(printf %03d $m).wav" synth "$3" "$1" "$2" gain -6 fade 0.01 "$3" 0.05
}
for phrase in "C5 D5 E5 G5 A5 G5 E5 D5" "E5 G5 A5 C6 D6 C6 A5 G5" \
              "A5 C6 D6 E6 G6 E6 D6 C6" "G4 A4 C5 D5 E5 D5 C5 A4" \
              "F5 A5 C6 F6 E6 C6 A5 F5" "D6 E6 F#6 A6 B6 A6 F#6 E6" \
              "Bb4 D5 F5 Bb5 A5 F5 D5 C5" "E6 D6 C6 B5 A5 G5 F5 E5"; do
    for nt in $phrase; do note sawtooth "$nt" 0.28; done
    for nt in $phrase; do note square "$nt" 0.19; done
done
sox "$tmp"/m*.wav "$tmp/lead.wav"
len=$(soxi -D "$tmp/lead.wav")
sox -r 8000 -n -b 16 "$tmp/pad.wav" synth "$len" sine 220-1800 sine 330-2400 remix - \
    tremolo 3 40 vol 0.3
sox -r 8000 -n -b 16 "$tmp/bass.wav" synth "$len" triangle 55-110 remix - vol 0.3
sox -m "$tmp/lead.wav" "$tmp/pad.wav" "$tmp/bass.wav" -e u-law -b 8 music_melody_8k.wav \
    trim 0 30 norm -3
ls -l ./*.wav
