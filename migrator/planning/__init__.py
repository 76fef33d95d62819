"""Pure: snapshot + inventory + playbook -> Plan (switchover, seed), and the one preflight that
observes, checks and plans."""
