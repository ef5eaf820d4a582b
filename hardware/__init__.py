"""Sensor plugins for ganglion: real devices, detected without configuration, and simulated ones.

* :mod:`hardware.plugin`: the ``hardware`` plugin ``ganglion node`` runs by default;
  it watches for 1-Wire thermometers, BME280/BMP280 on I2C, known USB-serial
  adapters and configured GPIO inputs, and runs one supervised loop per device.
* :mod:`hardware.port`: the port abstraction drivers use (I2C bus, input pin,
  serial port, clock); :mod:`hardware.backends` is the real machine,
  :mod:`hardware.mock` the shipped test doubles.
* :mod:`hardware.drivers`: BME280, DS18B20, NMEA, serial line formats, pulse logic.
* :mod:`hardware.readings` and :mod:`hardware.messages`: the message types.
* :mod:`hardware.sim_plugin`: simulated sensors (``--sim``).

Built on ganglion's public API only; device libraries (smbus2, gpiozero,
pyserial) are imported when a device is opened, so importing this package works
on any machine. docs/sensors.md is the user's guide.
"""
