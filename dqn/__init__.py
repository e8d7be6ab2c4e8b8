"""dqn: DeepMind's DQN (Mnih et al. 2013, and the Nature 2015 variant) on Atari."""

__version__ = "0.1.0"
