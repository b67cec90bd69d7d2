"""The Gradio web toolbox (`python app.py`): one module a wizard page, jobs.py for background jobs,
safety.py for who may reach the app and which paths it may read."""
