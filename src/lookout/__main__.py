from lookout.cli import app

app(prog_name="lookout")
