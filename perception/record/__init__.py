"""Recording (MCAP) and the readers replay uses: drive files, the node recorder, ROS image decoding."""
