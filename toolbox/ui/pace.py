"""How often the pages poll for job progress: fast while something runs, slowly when all is idle.

An idle page that re-renders every two seconds costs Chromium about a fifth of a core; a page polls at
IDLE_POLL_S only to notice a job started elsewhere (a terminal, another tab), and ticks that find
nothing new return "no update", so the browser does not redraw at all.
"""
ACTIVE_POLL_S = 2.0   # a queued or running job: its progress moves
IDLE_POLL_S = 15.0    # nothing running
