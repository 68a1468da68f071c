"""A spoken English sample of a few minutes, synthesised with espeak-ng and converted to 16 kHz mono WAV."""

from __future__ import annotations

import subprocess
import wave
from pathlib import Path

MIN_SECONDS = 180.0
WORDS_PER_MINUTE = 150

TEXT = """
The lighthouse at the end of the northern pier was built more than a century ago, when the harbour
was still the busiest on this stretch of coast. Every evening the keeper climbed the spiral stairs,
trimmed the wick, polished the great glass lens and wound the clockwork that turned it. Ships that
came in from the open sea watched for its light, counted the seconds between the flashes, and knew
from that rhythm which harbour lay ahead of them and which rocks they had to keep to the left.

Life at the station followed the weather more than the calendar. In the summer the days were long
and quiet, and the keeper spent them painting the railings, mending the boat and writing the log in
careful handwriting: the direction of the wind, the height of the waves, the ships that passed and
the hour at which the lamp was lit. In the winter the storms came one after another. Spray reached
the windows of the lantern room, the stairs were cold and wet, and on the worst nights nobody slept
at all, because the light had to be watched until the morning.

The town grew up around the harbour. There were fishermen and net makers, a bakery that opened
before dawn, a school with a bell that could be heard across the water, and a small market where
the catch was sold every morning except Sunday. Children learned to read the sky before they
learned to read books. They knew that a red sunset promised a calm day, that gulls flying inland
meant bad weather, and that the fog horn on the pier would sound every thirty seconds until the
fog had lifted.

Over the years the ships became larger and the harbour became too shallow for them. The railway
arrived, then the road, and the goods that had once come by sea were carried by trucks instead.
The fishing fleet grew smaller with every decade. The lamp was replaced by an electric one, the
clockwork by a motor, and in the end the keeper himself by a box of electronics that switched the
light on at dusk and off at dawn, and sent a message to an office far away when something failed.

Today the lighthouse is a museum. Visitors climb the same spiral stairs and look out over the same
grey water. In the room at the bottom there is a glass case with the old log books, open at a page
from a winter night long ago, when a cargo ship lost its engine in a gale and drifted towards the
rocks. The keeper wrote that he fired three rockets, that the lifeboat went out at two in the
morning, and that every member of the crew was brought ashore alive. The last line of the page
says only that the wind dropped at six, and that he lit the stove and made tea.

People who grew up in the town still speak about the light as if it were a person. They say it
watched over them, that it kept its promises, and that it never once went dark in a storm. Perhaps
that is why so many of them come back in the evening, when the museum has closed, to stand at the
end of the pier and wait for the first flash to sweep across the harbour, exactly as it did when
their grandparents were young.

Science tells a similar story about patience. A river carves a valley over a million years, one
grain of sand at a time. A forest returns to an abandoned field in a few generations, first with
grass, then with bushes, then with birch trees, and finally with oaks that will stand for three
hundred years. Nothing in these changes is sudden, and yet when we look back across a long enough
span of time, the landscape has become something entirely new.
"""


def synthesise(destination: Path) -> float:
    """Writes the sample to `destination` as 16 kHz mono 16-bit WAV; returns its duration in seconds."""
    duration = speak(destination, TEXT)
    if duration < MIN_SECONDS:
        raise RuntimeError(f"the spoken sample lasts {duration:.1f} s, less than {MIN_SECONDS:.0f} s")
    return duration


def speak(destination: Path, text: str) -> float:
    """Writes `text`, spoken, to `destination` as 16 kHz mono 16-bit WAV; returns its duration in seconds."""
    raw = destination.with_suffix(".espeak.wav")
    words = " ".join(text.split())
    subprocess.run(["espeak-ng", "-v", "en-us", "-s", str(WORDS_PER_MINUTE), "-w", str(raw), words], check=True)
    subprocess.run(["sox", str(raw), "-r", "16000", "-c", "1", "-b", "16", str(destination)], check=True)
    raw.unlink()
    return wav_duration(destination)


def wav_duration(path: Path) -> float:
    with wave.open(str(path)) as audio:
        frames: int = audio.getnframes()
        rate: int = audio.getframerate()
        return frames / rate
