"""Small pure rules shared by several layers: direction, sync mode, upstream, trust."""
