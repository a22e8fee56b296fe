"""Constants of the audio every model here reads: 16 kHz waveforms, 50 Hz frames."""

SAMPLE_RATE = 16_000  # Hz, of every waveform
FRAME_STRIDE = 320  # samples per 50 Hz frame: the total stride of a HuBERT CNN (and of our front-ends)
FRAME_WINDOW = 400  # samples seen by the first frame (25 ms): the CNN's receptive field
# the s3prl.hub name of a tiny HuBERT with the Fbank front-end (config.model.frontend=fbank); hubert_local cannot
# build it (models/tiny_hubert.py, s3prl_bridge/fbank_hubert.py)
FBANK_HUB_NAME = "hubert_fbank_local"
# a tiny HuBERT's front-end (config.model.frontend, the grid's --teacher-frontend) -> the s3prl.hub name that loads it
HUBERT_HUB_NAMES = {"cnn": "hubert_local", "fbank": FBANK_HUB_NAME}
