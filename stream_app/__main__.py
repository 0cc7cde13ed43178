"""python -m stream_app ... is the churnmon command."""
from .cli import main

main()
