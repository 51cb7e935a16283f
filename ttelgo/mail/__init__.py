"""Outgoing e-mail: templates rendered into MIME messages (`render`) and sent over SMTP (`smtp`)."""
