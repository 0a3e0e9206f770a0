"""The Audio-Interaction integration: rooms that listen, via the Audio-Interaction Wyoming server."""
