"""The real test rig: a mosquitto broker, ALSA capture from a file, camera sources from files/HTTP."""
