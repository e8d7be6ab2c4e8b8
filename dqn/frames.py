"""What the network sees, shared by every environment, the replay memory and the network;
imports nothing from `dqn`."""

FRAME_PIXELS = 84  # 2013 §4.1: the network sees 84x84 frames
HISTORY_FRAMES = 4  # 2013 §4.1: phi stacks the last 4 preprocessed frames
