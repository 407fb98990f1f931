"""The yardsticks: servers and drivers that tilefn is compared with."""
