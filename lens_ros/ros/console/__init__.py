"""``lens-console``: the operator's web page (``server``: HTTP, ``bridge``: ROS, ``static/``)."""
