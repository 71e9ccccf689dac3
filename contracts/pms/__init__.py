"""PMS (设备运维精益管理系统, grid-resource middle platform) contracts: XML on AMQP."""

from gridbus.contracts.pms.black_map import BlackMapPublished, EquipmentItem
from gridbus.contracts.pms.energization import EnergizationCompletedNotice
from gridbus.contracts.pms.project import ProjectCreated

__all__ = ["BlackMapPublished", "EnergizationCompletedNotice", "EquipmentItem", "ProjectCreated"]
