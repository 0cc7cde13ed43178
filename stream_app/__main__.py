"""python -m stream_app ... is the churnmon command."""
from .tools.cli import main

main()
