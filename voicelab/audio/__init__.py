"""Audio parts of a voice call: where the caller's audio comes from and the agent's goes.

- synthetic.py: a scripted persona that speaks (espeak-ng) like a real microphone would.
- sounddevice.py: a real microphone and speaker (PortAudio), for a human caller.
- wav.py: the call's stereo recording (caller left, agent right, on the call clock).
"""
