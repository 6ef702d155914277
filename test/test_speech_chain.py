"""The whole spoken-command chain over real DDS, three processes: audio chunks ->
speech_node -> ``command`` -> lens_node (tiny random-weight model) -> a ``result`` whose
``command`` is the spoken text."""
from __future__ import annotations

import pytest

from helpers.node_client import LensNodeProcess, NodeClient, make_image
from helpers.speech_client import NODE, SpeechProbe, fixture_pcm, recognised_rows

pytestmark = [pytest.mark.ros, pytest.mark.slow]

def test_spoken_command_gives_a_lens_result_for_the_spoken_text(spawn, tiny_model_dir,
                                                                 tmp_path):
    rows = recognised_rows(2)
    speech = spawn(NODE)
    lens = LensNodeProcess(tmp_path, {"model_path": str(tiny_model_dir), "max_new_tokens": 8,
                                      "image_reliability": "reliable"})
    client = NodeClient("speech_chain_client")
    probe = SpeechProbe("speech_chain_probe")
    try:
        client.wait_active()
        probe.wait_listener(command_subscribers=2)  # the probe and lens_node
        img = make_image(48, 64, stamp=(77, 0), frame_id="cam_speech")
        client.publish_frame(img)
        for k, row in enumerate(rows):
            probe.say(fixture_pcm(row), stamp=500.0 + 10 * k)
            text = row["text"]
            assert client.spin_until(lambda: client.results_for(text), 90), \
                (text, probe.commands, [t.reason for t in probe.transcripts])
            res = client.results_for(text)[0]
            assert res.command == text
            # answered on our frame (the random tiny model's mask itself means nothing)
            assert (res.header.stamp.sec, res.header.frame_id) == (77, "cam_speech")
        probe.spin_until(lambda: len(probe.commands) >= len(rows), 10)
        assert probe.commands == [row["text"] for row in rows]
    finally:
        probe.close()
        client.close()
        rc = lens.stop()
    assert rc == 0, lens.output()[-3000:]
    assert speech.poll() is None, speech.log.read_text()
