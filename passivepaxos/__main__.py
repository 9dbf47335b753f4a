from passivepaxos.cli import run

run()
