"""The gateway's transport stage: the MQTT session and network loop, the inbox to the
processing thread, the fast PUBLISH decode and dropping readings already seen."""
