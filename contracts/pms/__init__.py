"""PMS (设备运维精益管理系统, grid-resource middle platform) contracts: XML on AMQP."""

from gridbus.contracts.pms.black_map import BlackMapPublished, EquipmentItem

__all__ = ["BlackMapPublished", "EquipmentItem"]
