from competition.cli import app

app(prog_name="fkp")
